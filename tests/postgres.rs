//! PostgreSQL through the real binary against real servers started by the test harness
//! (tests/common/postgres.rs).

mod common;

use common::postgres::PgServer;

/// The harness starts a cluster, the password role can connect over TCP and a wrong password is
/// refused; the superuser reaches it over the socket.
#[test]
fn harness_starts_a_cluster_with_password_auth() {
    let pg = PgServer::start();
    let mut c = pg.client();
    let row = c
        .query_one("SELECT current_user::text, 1 + 1", &[])
        .unwrap();
    let user: String = row.get(0);
    let two: i32 = row.get(1);
    assert_eq!((user.as_str(), two), (PgServer::USER, 2));
    assert_eq!(pg.psql("SELECT current_user").trim(), PgServer::ADMIN);

    let mut cfg = postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(pg.port)
        .user(PgServer::USER)
        .password("wrong")
        .dbname(PgServer::DB);
    let err = cfg
        .connect(postgres::NoTls)
        .err()
        .expect("a wrong password is refused");
    let db = err.as_db_error().expect("the server's answer");
    assert_eq!(db.code().code(), "28P01", "{}", db.message());
}
