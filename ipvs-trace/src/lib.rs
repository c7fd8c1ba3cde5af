//! ipvs-trace: which pod did IPVS send each connection to.
