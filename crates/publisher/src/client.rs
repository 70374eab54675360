//! HTTP client (filled below).
