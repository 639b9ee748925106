//! A pool driven from tokio with the `async` feature: `apply_async` results
//! are awaited, `imap_unordered` is consumed as a `Stream`, and the runtime's
//! threads never block on the pool.

use futures_util::StreamExt;
use shmproc::Pool;

fn square(x: u64) -> u64 {
    x * x
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> shmproc::Result<()> {
    let pool = Pool::new(2)?;
    let a = pool.apply_async(square, 7)?;
    let b = pool.apply_async(square, 8)?;
    // Both tasks run at once; awaiting never blocks the runtime thread.
    println!("{} {}", a.await?, b.await?);
    let mut total = 0;
    let mut squares = pool.imap_unordered(square, 1..=100u64).into_stream();
    while let Some(s) = squares.next().await {
        total += s?;
    }
    println!("sum of squares 1..=100: {total}");
    Ok(())
}
