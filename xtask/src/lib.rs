//! The VM lab and build helpers of ipvs-trace.
