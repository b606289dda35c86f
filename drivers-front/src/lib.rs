//! Front-end split drivers (netfront, blkfront, consfront), generic over small platform
//! traits so that any PV guest can use them, not only libos guests.
//!
//! Nothing here yet: the drivers arrive with the grant-table and xenbus issues.
#![no_std]
#![forbid(unsafe_code)]
