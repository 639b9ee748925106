//! Seed 18: a chain of two pipes. `create_items` sends 0..9 into pipe 1 and
//! closes it; `multiply_items` squares what it receives into pipe 2 until end
//! of file; the parent prints the squares, then `End` at end of file.
//!
//! Python:
//! ```python
//! def create_items(pipe):
//!     output_pipe, _ = pipe
//!     for item in range(10):
//!         output_pipe.send(item)
//!     output_pipe.close()
//! def multiply_items(pipe_1, pipe_2):
//!     close, input_pipe = pipe_1
//!     close.close()
//!     output_pipe, _ = pipe_2
//!     try:
//!         while True:
//!             item = input_pipe.recv()
//!             output_pipe.send(item * item)
//!     except EOFError:
//!         output_pipe.close()
//! if __name__ == "__main__":
//!     pipe_1 = multiprocessing.Pipe(True)
//!     process_pipe_1 = multiprocessing.Process(target=create_items, args=(pipe_1,))
//!     process_pipe_1.start()
//!     pipe_2 = multiprocessing.Pipe(True)
//!     process_pipe_2 = multiprocessing.Process(target=multiply_items, args=(pipe_1, pipe_2))
//!     process_pipe_2.start()
//!     pipe_1[0].close()
//!     pipe_2[0].close()
//!     try:
//!         while True:
//!             print(pipe_2[1].recv())
//!     except EOFError:
//!         print("End")
//! ```
//!
//! End of file is [`Error::Eof`]: `recv` returns it once every process that
//! held the other end has closed it (or exited) and nothing is left to read.
//! So, as in Python, every holder of a sending end must close it: the parent
//! closes its `pipe_1[0]` and `pipe_2[0]`, `multiply_items` its `pipe_1[0]`.
//!
//! A `Connection` moves into the process arguments (they are encoded when the
//! `Process` is made), so each child gets its own attachment of the ends,
//! made with [`dup`]; the parent keeps its own until the children are joined
//! (the creator's last `Connection` of a pipe unlinks the pipe's name).

use shmproc::{Connection, Error, Pipe, Process};

/// Another `Connection` to the same pipe end, as a child would attach it.
fn dup(c: &Connection) -> shmproc::Result<Connection> {
    c.try_clone()
}

/// Both ends of a pipe, as Python's `Pipe()` returns them.
type Ends = (Connection, Connection);

fn dup_ends(p: &Ends) -> shmproc::Result<Ends> {
    Ok((dup(&p.0)?, dup(&p.1)?))
}

fn create_items(pipe: Ends) {
    let (output_pipe, _) = pipe;
    for item in 0..10u64 {
        output_pipe.send(&item).expect("send");
    }
    output_pipe.close().expect("close");
}

fn multiply_items((pipe_1, pipe_2): (Ends, Ends)) {
    let (close, input_pipe) = pipe_1;
    close.close().expect("close");
    let (output_pipe, _) = pipe_2;
    loop {
        match input_pipe.recv::<u64>() {
            Ok(item) => output_pipe.send(&(item * item)).expect("send"),
            Err(Error::Eof) => break,
            Err(e) => panic!("recv: {e}"),
        }
    }
    output_pipe.close().expect("close");
}

fn main() -> shmproc::Result<()> {
    // The first pipe sends numbers.
    let pipe_1 = Pipe::new(true)?;
    let process_pipe_1 = Process::new(create_items, dup_ends(&pipe_1)?);
    process_pipe_1.start()?;

    // The second pipe receives numbers and calculations.
    let pipe_2 = Pipe::new(true)?;
    let process_pipe_2 = Process::new(multiply_items, (dup_ends(&pipe_1)?, dup_ends(&pipe_2)?));
    process_pipe_2.start()?;

    pipe_1.0.close()?;
    pipe_2.0.close()?;

    loop {
        match pipe_2.1.recv::<u64>() {
            Ok(v) => println!("{v}"),
            Err(Error::Eof) => {
                println!("End");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    process_pipe_1.join()?;
    process_pipe_2.join()?;
    Ok(())
}
