//! Read buffers lent for one request at a time: a logged-in client that is not in a
//! transaction holds none (PgBouncer's sbuf keeps no buffer for an idle client either). A
//! buffer is taken when the client's socket turns readable and given back when the request is
//! done and nothing of the next one is left in it, so warm clients allocate nothing per
//! transaction and 10,000 idle ones hold no 16 KiB each.

use std::cell::RefCell;

use bytes::BytesMut;

/// What a lent buffer holds: the relay's read chunk, so the pump that takes it over does not
/// grow it for an ordinary request.
pub const BUFFER_SIZE: usize = 16 * 1024;
/// Free buffers kept per worker thread; more are freed. Bounds the pool's memory (1 MiB per
/// thread) while covering the clients one thread has mid-request at once in practice.
const KEEP_PER_THREAD: usize = 64;

thread_local! {
    // One free list per runtime thread: no lock, and a buffer is reused by the thread
    // whose cache it is warm in.
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for [`BUFFER_SIZE`] bytes, from the free list when there is one.
pub fn take() -> BytesMut {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(BUFFER_SIZE))
}

/// Gives an empty buffer back. One still holding bytes, one whose memory is still shared with
/// bytes on their way out, or one a large message grew is dropped instead.
pub fn give(mut buf: BytesMut) {
    if !buf.is_empty() || !buf.try_reclaim(BUFFER_SIZE) || buf.capacity() > 4 * BUFFER_SIZE {
        return;
    }
    FREE.with(|f| {
        let mut free = f.borrow_mut();
        if free.len() < KEEP_PER_THREAD {
            free.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_again_without_allocating() {
        let mut b = take();
        b.extend_from_slice(b"Q\0\0\0\x05");
        let sent = b.split_to(5).freeze();
        drop(sent);
        let ptr = b.as_ptr() as usize;
        give(b);
        let again = take();
        assert!(again.is_empty() && again.capacity() >= BUFFER_SIZE);
        // the same allocation, reclaimed from the start
        assert_eq!(again.as_ptr() as usize, ptr - 5);
    }

    #[test]
    fn buffers_in_use_or_not_empty_are_not_kept() {
        FREE.with(|f| f.borrow_mut().clear());
        let mut b = take();
        b.extend_from_slice(b"abc");
        give(b);
        let mut b = take();
        b.extend_from_slice(b"abc");
        let still_sent = b.split_to(3).freeze();
        give(b);
        assert_eq!(FREE.with(|f| f.borrow().len()), 0);
        drop(still_sent);
    }
}
