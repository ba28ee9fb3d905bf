//! Where an image's bytes live: a single `.oimg` file, or the `/osimage/` folder of an ISO.
