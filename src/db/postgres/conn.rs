//! A blocking connection over `tokio_postgres`: the client, its connection and a current-thread
//! runtime that this module owns.
//!
//! Each call is one `block_on` that drives the connection (socket reads and writes) while it
//! waits for its answer, as the sync `postgres` crate does. Owning the runtime is what lets a
//! caller do more inside one `block_on` than the crate allows: the COPY export pulls every
//! CopyData message (one per row) of a 256 KiB batch in one runtime entry instead of one entry
//! per row ([`Conn::block_on`]).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::types::ToSql;
use tokio_postgres::{
    AsyncMessage, Client, Error, Row, SimpleQueryMessage, Statement, ToStatement,
};

/// How long dropping a connection waits for it to say goodbye to the server.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What [`Conn`] needs of a `tokio_postgres::Connection`, whatever its TLS stream type.
trait Driver {
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<AsyncMessage, Error>>>;
    fn parameter(&self, name: &str) -> Option<&str>;
}

impl<S, T> Driver for tokio_postgres::Connection<S, T>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<AsyncMessage, Error>>> {
        tokio_postgres::Connection::poll_message(self, cx)
    }

    fn parameter(&self, name: &str) -> Option<&str> {
        tokio_postgres::Connection::parameter(self, name)
    }
}

/// Why connecting failed: the runtime could not start, or the server did not accept.
#[derive(Debug)]
pub(super) enum ConnectError {
    /// The runtime could not be built (out of threads or file descriptors).
    Runtime(std::io::Error),
    /// The connection failed.
    Pg(Error),
}

/// One blocking connection.
pub(super) struct Conn {
    /// `None` only while dropping (dropping the client is what ends the connection).
    client: Option<Client>,
    engine: Engine,
}

/// The runtime and the connection's driver: what runs a call.
pub(super) struct Engine {
    driver: Box<dyn Driver>,
    /// The connection has ended (error or close): it is not polled again.
    ended: bool,
    rt: tokio::runtime::Runtime,
}

impl Engine {
    /// Runs `f` to completion while driving the connection: one runtime entry, however many
    /// messages `f` takes. Server notices are logged.
    pub(super) fn block_on<T>(
        &mut self,
        f: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut f = pin!(f);
        let driver = &mut self.driver;
        let ended = &mut self.ended;
        self.rt.block_on(std::future::poll_fn(|cx| {
            while !*ended {
                match driver.poll_message(cx) {
                    Poll::Ready(Some(Ok(AsyncMessage::Notice(n)))) => {
                        tracing::info!("postgres {}: {}", n.severity(), n.message());
                    }
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => {
                        *ended = true;
                        return Poll::Ready(Err(e));
                    }
                    Poll::Ready(None) => *ended = true,
                    Poll::Pending => break,
                }
            }
            // Once the connection has ended, the client's requests fail at once (its channel
            // is closed), so `f` cannot wait forever.
            f.as_mut().poll(cx)
        }))
    }
}

impl Conn {
    /// Connects with `config`, through TLS when `tls` is given.
    pub(super) fn connect(
        config: &tokio_postgres::Config,
        tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Result<Conn, ConnectError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let (client, driver): (Client, Box<dyn Driver>) = match tls {
            None => {
                let (c, d) = rt
                    .block_on(config.connect(tokio_postgres::NoTls))
                    .map_err(ConnectError::Pg)?;
                (c, Box::new(d))
            }
            Some(t) => {
                let (c, d) = rt.block_on(config.connect(t)).map_err(ConnectError::Pg)?;
                (c, Box::new(d))
            }
        };
        Ok(Conn {
            client: Some(client),
            engine: Engine {
                driver,
                ended: false,
                rt,
            },
        })
    }

    /// The client and the engine, apart: the client builds the futures the engine runs.
    pub(super) fn parts(&mut self) -> (&Client, &mut Engine) {
        // Only `drop` takes the client out.
        let client = self.client.as_ref().expect("the client lives until drop");
        (client, &mut self.engine)
    }

    /// A parameter the server reports (`TimeZone`, `DateStyle`, ...), as of the last call.
    pub(super) fn parameter(&self, name: &str) -> Option<&str> {
        self.engine.driver.parameter(name)
    }

    /// A token to cancel the running statement from another thread.
    pub(super) fn cancel_token(&mut self) -> tokio_postgres::CancelToken {
        self.parts().0.cancel_token()
    }

    /// Runs statements separated by `;` with the simple query protocol.
    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        let (c, e) = self.parts();
        e.block_on(c.batch_execute(sql))
    }

    /// Runs statements separated by `;` with the simple query protocol, with their messages.
    pub(super) fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        let (c, e) = self.parts();
        e.block_on(c.simple_query(sql))
    }

    /// Prepares a statement.
    pub(super) fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        let (c, e) = self.parts();
        e.block_on(c.prepare(sql))
    }

    /// Runs a statement and returns the number of rows it changed.
    pub(super) fn execute<S: ToStatement + ?Sized>(
        &mut self,
        st: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        let (c, e) = self.parts();
        e.block_on(c.execute(st, params))
    }

    /// Runs a statement and returns its rows.
    pub(super) fn query<S: ToStatement + ?Sized>(
        &mut self,
        st: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let (c, e) = self.parts();
        e.block_on(c.query(st, params))
    }

    /// Runs `COPY ... FROM STDIN` with `data` (COPY text) and returns the rows copied.
    pub(super) fn copy_in(&mut self, sql: &str, data: bytes::Bytes) -> Result<u64, Error> {
        let (c, e) = self.parts();
        e.block_on(async {
            let mut sink = pin!(c.copy_in::<_, bytes::Bytes>(sql).await?);
            // A failed send is the server's answer to the data (a row it refused).
            futures_util::SinkExt::send(&mut sink, data).await?;
            sink.as_mut().finish().await
        })
    }

    /// Starts `COPY ... TO STDOUT`; the caller reads the stream with [`Engine::block_on`].
    pub(super) fn copy_out(&mut self, sql: &str) -> Result<CopyOut, Error> {
        let (c, e) = self.parts();
        Ok(Box::pin(e.block_on(c.copy_out(sql))?))
    }
}

/// The data of a `COPY ... TO STDOUT`.
pub(super) type CopyOut = std::pin::Pin<Box<tokio_postgres::CopyOutStream>>;

/// Reads from `stream` until `buf` holds at least `want` bytes or the data ends (then `true`),
/// in one runtime entry.
pub(super) fn fill(
    engine: &mut Engine,
    stream: &mut CopyOut,
    buf: &mut Vec<u8>,
    want: usize,
) -> Result<bool, Error> {
    engine.block_on(async {
        while buf.len() < want {
            match stream.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk?),
                None => return Ok(true),
            }
        }
        Ok(false)
    })
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the client closes its channel: the connection sends Terminate and ends.
        drop(self.client.take());
        let engine = &mut self.engine;
        if engine.ended {
            return;
        }
        let driver = &mut engine.driver;
        let closed = std::future::poll_fn(|cx| {
            loop {
                match driver.poll_message(cx) {
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(_) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        });
        // The timer must be made inside the runtime.
        let _ = engine
            .rt
            .block_on(async { tokio::time::timeout(CLOSE_WAIT, closed).await });
    }
}
