//! HTTP method semantics, including the method-override headers some
//! frameworks honour (so a `POST` with `X-HTTP-Method-Override: DELETE` is
//! treated as the `DELETE` it may become upstream).
