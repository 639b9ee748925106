//! Seed 7: `put_1` and `put_2` exchange `hello` / `nice to meet you` over one
//! duplex `Pipe`, and report what they received through a `Queue`.
//!
//! Python:
//! ```python
//! def put_1(p, q):
//!     x = 'hello'
//!     p[0].send(x)
//!     temp = 'put_1: ' + p[0].recv()
//!     q.put(temp)
//! def put_2(p, q):
//!     y = 'nice to meet you'
//!     p[1].send(y)
//!     temp = 'put_2: ' + p[1].recv()
//!     q.put(temp)
//! if __name__ == '__main__':
//!     p = Pipe()
//!     q = Queue()
//!     p1 = Process(target=put_1, args=(p, q))
//!     p2 = Process(target=put_2, args=(p, q))
//!     p1.start()
//!     p2.start()
//!     p1.join()
//!     p2.join()
//!     for _ in range(2):
//!         print(q.get())
//! ```
//!
//! Prints `put_1: nice to meet you` and `put_2: hello`, in the order the two
//! children finished (as in Python, either order can happen).
//!
//! A `Connection` moves into the process arguments (they are encoded when the
//! `Process` is made), so each child gets its own attachment of both ends,
//! made with [`dup`], and the parent keeps `p` until the children are joined
//! (the creator's last `Connection` unlinks the pipe's name).

use shmproc::{Connection, Pipe, Process, Queue};

/// Another `Connection` to the same pipe end, as a child would attach it.
fn dup(c: &Connection) -> shmproc::Result<Connection> {
    c.try_clone()
}

type Args = ((Connection, Connection), Queue<String>);

fn put_1((p, q): Args) {
    let x = "hello".to_string();
    p.0.send(&x).expect("send");
    let temp = format!("put_1: {}", p.0.recv::<String>().expect("recv"));
    q.put(temp).expect("put");
}

fn put_2((p, q): Args) {
    let y = "nice to meet you".to_string();
    p.1.send(&y).expect("send");
    let temp = format!("put_2: {}", p.1.recv::<String>().expect("recv"));
    q.put(temp).expect("put");
}

fn main() -> shmproc::Result<()> {
    let p = Pipe::new(true)?;
    let q = Queue::<String>::new()?;
    let p1 = Process::new(put_1, ((dup(&p.0)?, dup(&p.1)?), q.clone()));
    let p2 = Process::new(put_2, ((dup(&p.0)?, dup(&p.1)?), q.clone()));
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    for _ in 0..2 {
        println!("{}", q.get()?);
    }
    Ok(())
}
