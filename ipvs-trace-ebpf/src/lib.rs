// This file exists so the crate has a library target, which lets `ipvs-trace` name it as a
// build-dependency and be rebuilt when the programs change.
#![no_std]
