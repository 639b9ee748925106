//! Pipes between real processes: EOF after the peer closes or is SIGKILLed,
//! broken pipe, duplex exchange (seed 7) and a pipe chain (seed 18).

mod common;

use std::time::Duration;

use common::{child_input, spawn_child, Watchdog};
use shmproc::ipc::{Connection, Pipe, Pods};
use shmproc::Error;

const LONG: Duration = Duration::from_secs(120);

// ---- seed 7: a duplex exchange -------------------------------------------------

#[test]
#[ignore]
fn child_duplex_peer() {
    let Some(c) = child_input::<Connection>("duplex") else {
        return;
    };
    c.send(&"nice to meet you".to_string()).unwrap();
    let got: String = c.recv().unwrap();
    assert_eq!(got, "hello");
}

#[test]
fn duplex_pipe_exchanges_messages_with_a_child() {
    let _w = Watchdog::new("duplex", LONG);
    let (a, b) = Pipe::new(true).unwrap();
    let mut kid = spawn_child("child_duplex_peer", "duplex", &b);
    drop(b);
    a.send(&"hello".to_string()).unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "nice to meet you");
    assert!(kid.wait(LONG).success());
    // The child exited and its end went with it.
    assert!(matches!(a.recv::<String>(), Err(Error::Eof)));
}

// ---- EOF after the writer closes ----------------------------------------------------

#[test]
#[ignore]
fn child_writer_then_close() {
    let Some((w, n)) = child_input::<(Connection, u32)>("writer") else {
        return;
    };
    for i in 0..n {
        w.send(&i).unwrap();
    }
    w.close().unwrap();
    println!("closed");
    std::thread::sleep(LONG); // still alive: EOF comes from close, not exit
}

#[test]
fn recv_gets_eof_after_the_writer_process_closes() {
    let _w = Watchdog::new("eof after close", LONG);
    let (r, w) = Pipe::new(false).unwrap();
    let mut kid = spawn_child("child_writer_then_close", "writer", &(&w, 500u32));
    drop(w); // the serialized copy keeps the end open until the child attaches
    for i in 0..500u32 {
        assert_eq!(r.recv::<u32>().unwrap(), i);
    }
    assert!(matches!(r.recv::<u32>(), Err(Error::Eof)));
    assert!(r.poll(Duration::ZERO).unwrap());
    kid.read_until("closed");
    kid.kill9();
}

// ---- EOF after the writer is SIGKILLed ---------------------------------------------

#[test]
#[ignore]
fn child_writer_then_hang() {
    let Some(w) = child_input::<Connection>("hang") else {
        return;
    };
    for i in 0..3u32 {
        w.send(&i).unwrap();
    }
    // A big message, half-streamed when the kill comes: it fills the ring
    // and blocks, because nobody reads yet.
    println!("sent");
    let _ = w.send(&Pods(vec![1u8; 1 << 20]));
    std::thread::sleep(LONG);
}

#[test]
fn recv_gets_eof_after_the_writer_process_is_killed() {
    let _w = Watchdog::new("eof after kill", LONG);
    let (r, w) = Pipe::with_ring_bytes(false, 64 << 10).unwrap();
    let mut kid = spawn_child("child_writer_then_hang", "hang", &w);
    drop(w);
    kid.read_until("sent");
    std::thread::sleep(Duration::from_millis(100));
    kid.kill9();
    // Everything committed before the kill arrives; the half-streamed message
    // is dropped whole; then EOF (never a hang).
    for i in 0..3u32 {
        assert_eq!(r.recv::<u32>().unwrap(), i);
    }
    assert!(matches!(r.recv::<Pods<u8>>(), Err(Error::Eof)));
}

#[test]
#[ignore]
fn child_silent_holder() {
    let Some(w) = child_input::<Connection>("silent") else {
        return;
    };
    println!("holding");
    std::thread::sleep(LONG);
    drop(w);
}

#[test]
fn a_blocked_recv_wakes_with_eof_when_the_writer_is_killed() {
    let _w = Watchdog::new("blocked recv, kill", LONG);
    let (r, w) = Pipe::new(false).unwrap();
    let mut kid = spawn_child("child_silent_holder", "silent", &w);
    drop(w);
    kid.read_until("holding");
    let t = std::thread::spawn(move || r.recv::<u32>());
    std::thread::sleep(Duration::from_millis(100));
    kid.kill9();
    assert!(matches!(t.join().unwrap(), Err(Error::Eof)));
}

// ---- broken pipe: the reader dies while the writer is blocked ---------------------

#[test]
fn a_blocked_send_fails_with_broken_pipe_when_the_reader_is_killed() {
    let _w = Watchdog::new("broken pipe", LONG);
    let (r, w) = Pipe::with_ring_bytes(false, 4096).unwrap();
    let mut kid = spawn_child("child_silent_holder", "silent", &r);
    drop(r);
    kid.read_until("holding");
    let t = std::thread::spawn(move || {
        // Nobody reads: the ring fills and a send blocks until the reader dies.
        loop {
            if let Err(e) = w.send(&Pods(vec![0u64; 100])) {
                return e;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    kid.kill9();
    assert!(matches!(t.join().unwrap(), Error::BrokenPipe));
}

// ---- seed 18: a pipe chain that ends with EOF --------------------------------------

#[test]
#[ignore]
fn child_create_items() {
    let Some(out) = child_input::<Connection>("create") else {
        return;
    };
    println!("attached");
    for item in 0..10u64 {
        out.send(&item).unwrap();
    }
    out.close().unwrap();
}

#[test]
#[ignore]
fn child_multiply_items() {
    let Some((input, out)) = child_input::<(Connection, Connection)>("multiply") else {
        return;
    };
    println!("attached");
    loop {
        match input.recv::<u64>() {
            Ok(x) => out.send(&(x * x)).unwrap(),
            Err(Error::Eof) => break,
            Err(e) => panic!("{e}"),
        }
    }
    out.close().unwrap();
}

#[test]
fn a_pipe_chain_ends_with_eof() {
    let _w = Watchdog::new("pipe chain", LONG);
    let (r1, w1) = Pipe::new(true).unwrap();
    let (r2, w2) = Pipe::new(true).unwrap();
    let mut a = spawn_child("child_create_items", "create", &w1);
    let mut b = spawn_child("child_multiply_items", "multiply", &(&r1, &w2));
    // As in the Python program, the parent closes the ends it does not use,
    // once the children have attached (the creator's last drop unlinks the
    // segment's name, after which nobody new can attach).
    a.read_until("attached");
    b.read_until("attached");
    drop((w1, r1, w2));
    let mut got = Vec::new();
    loop {
        match r2.recv::<u64>() {
            Ok(x) => got.push(x),
            Err(Error::Eof) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
    assert!(a.wait(LONG).success());
    assert!(b.wait(LONG).success());
}

// ---- a big message through a pipe ---------------------------------------------------

#[test]
#[ignore]
fn child_pipe_echo() {
    let Some(c) = child_input::<Connection>("echo") else {
        return;
    };
    while let Ok(b) = c.recv_bytes() {
        c.send_bytes(&b).unwrap();
    }
}

#[test]
fn big_messages_round_trip_through_a_pipe() {
    let _w = Watchdog::new("pipe echo", LONG);
    let (a, b) = Pipe::new(true).unwrap();
    let mut kid = spawn_child("child_pipe_echo", "echo", &b);
    drop(b);
    for size in [0usize, 1, 1000, 65_536, 3 << 20] {
        let msg: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        a.send_bytes(&msg).unwrap();
        assert!(a.poll(Duration::from_secs(60)).unwrap());
        assert_eq!(a.recv_bytes().unwrap(), msg);
    }
    a.close().unwrap();
    assert!(kid.wait(LONG).success());
}

// ---- typed messages ---------------------------------------------------------

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Point {
    x: u8,
    y: u8,
}

#[test]
fn receiving_another_type_is_an_error_naming_both_types() {
    let (a, b) = Pipe::new(true).unwrap();
    // A struct whose encoding would decode as a String ("\u{4}"-like bytes).
    a.send(&Point { x: 1, y: 4 }).unwrap();
    match b.recv::<String>() {
        Err(Error::TypeMismatch { expected, found }) => {
            assert!(expected.contains("alloc::string::String"), "{expected}");
            assert!(found.contains("ipc_pipe::Point"), "{found}");
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    // The message was consumed; the next one of the right type is received.
    a.send(&Point { x: 2, y: 3 }).unwrap();
    assert_eq!(b.recv::<Point>().unwrap(), Point { x: 2, y: 3 });
    // Same size, other type: still an error, never a wrong value.
    a.send(&7u32).unwrap();
    let e = b.recv::<i32>().unwrap_err();
    assert!(
        e.to_string()
            .contains("expected a message of type i32, found a message of type u32"),
        "{e}"
    );
    // Raw bytes are not a typed message, and recv_bytes takes any message.
    a.send_bytes(b"raw").unwrap();
    let e = b.recv::<Vec<u8>>().unwrap_err();
    assert!(e.to_string().contains("send_bytes"), "{e}");
    a.send(&Pods(vec![1u16, 2])).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), [1, 0, 2, 0]);
    a.send_bytes(b"raw").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"raw");
}

#[test]
fn streamed_messages_carry_their_type_too() {
    // Bigger than the ring: the message and its tag travel as a stream.
    let (a, b) = Pipe::with_ring_bytes(true, 4096).unwrap();
    let big: Vec<u64> = (0..10_000).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            a.send(&Pods(big.clone())).unwrap();
            a.send(&big).unwrap();
        });
        assert_eq!(b.recv::<Pods<u64>>().unwrap().0, big);
        let e = b.recv::<Pods<u64>>().unwrap_err();
        assert!(matches!(e, Error::TypeMismatch { .. }), "{e}");
    });
}
