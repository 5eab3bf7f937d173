mod sources;
mod store;
