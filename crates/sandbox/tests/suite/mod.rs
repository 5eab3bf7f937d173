mod ahead;
mod common;
mod filesystem;
mod lifetime;
mod network;
mod seccomp;
mod tty;
