#![no_std]
#![no_main]
fn main() {}
libos::main!(main);
