mod common;
mod credentials;
mod framing;
mod pocketos;
mod routing;
mod websocket;
