//! Fault survival with real `worker` processes, SIGKILLed at chosen steps of a
//! sign-in, against mock providers over real HTTP. One test binary.

mod burst;
mod crash;
mod helpers;
