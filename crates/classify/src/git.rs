//! Git smart-HTTP pushes: the ref updates at the head of a
//! `git-receive-pack` request body.
