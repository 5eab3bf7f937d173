mod common;
mod credentials;
mod framing;
mod http2;
mod pocketos;
mod routing;
mod websocket;
