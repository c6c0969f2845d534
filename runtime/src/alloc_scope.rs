//! Which third-party call this thread is in: tract's `run`, the image
//! decoder, the image resizer. The hot-path allocation test's counting
//! allocator reads it to attribute allocations; a thread-local byte, with
//! no cost worth measuring and no allocation.

use std::cell::Cell;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Scope {
    /// The runtime's own code.
    Runtime = 0,
    /// tract running a graph (encoder, stage or subtask model).
    Model = 1,
    /// JPEG/PNG decoding (zune-jpeg, png).
    ImageDecode = 2,
    /// Resampling to the encoder's input size (fast_image_resize).
    Resize = 3,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Runtime,
        Scope::Model,
        Scope::ImageDecode,
        Scope::Resize,
    ];
}

thread_local! {
    static CURRENT: Cell<u8> = const { Cell::new(0) };
}

/// The scope this thread is in.
pub fn current() -> Scope {
    match CURRENT.with(Cell::get) {
        1 => Scope::Model,
        2 => Scope::ImageDecode,
        3 => Scope::Resize,
        _ => Scope::Runtime,
    }
}

/// Runs `f` in `scope`.
pub fn within<R>(scope: Scope, f: impl FnOnce() -> R) -> R {
    let prev = CURRENT.with(|c| c.replace(scope as u8));
    let r = f();
    CURRENT.with(|c| c.set(prev));
    r
}
