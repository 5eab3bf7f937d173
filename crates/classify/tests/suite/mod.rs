//! Integration tests, one module per classifier.

mod argv;
mod corpus;
mod git;
mod graphql;
mod http;
