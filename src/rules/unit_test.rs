//! `guardia test rules`: runs `promtool test rules` files.
