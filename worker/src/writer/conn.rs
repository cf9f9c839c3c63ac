//! Where a write's statements run ([`WriteConn`]) and the transactions inside one
//! ([`WriteTxn`]); both take sea-orm queries like any connection.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use super::held::{Held, Name, Savepoint};

/// Where a write's statements run: in the owner's batch on SQLite, in a
/// transaction of its own on PostgreSQL, or straight on a pool. Queries take it like
/// any sea-orm connection.
pub enum WriteConn<'a> {
    Held(&'a Held),
    Transaction(&'a DatabaseTransaction),
    Pool(&'a DatabaseConnection),
}

/// A transaction inside a write ([`WriteConn::begin`]): committed or rolled back by
/// its holder; one dropped without either is rolled back.
pub enum WriteTxn<'a> {
    Savepoint(Savepoint<'a>),
    Transaction(DatabaseTransaction),
}

/// Takes the write lock at `BEGIN`: a transaction that read first and wrote later
/// could otherwise find another process committed in between (`SQLITE_BUSY`)
/// instead of waiting its turn.
pub fn immediate() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    }
}

impl WriteConn<'_> {
    /// A transaction inside this write: a savepoint of the write's transaction, or
    /// a transaction of its own straight on a pool.
    pub async fn begin(&self) -> Result<WriteTxn<'_>, DbErr> {
        Ok(match self {
            Self::Held(held) => WriteTxn::Savepoint(held.savepoint(Name::Inner)?),
            Self::Transaction(txn) => WriteTxn::Transaction(txn.begin().await?),
            Self::Pool(conn) => WriteTxn::Transaction(conn.begin_with_options(immediate()).await?),
        })
    }
}

impl WriteTxn<'_> {
    pub async fn commit(self) -> Result<(), DbErr> {
        match self {
            Self::Savepoint(savepoint) => savepoint.release(),
            Self::Transaction(txn) => txn.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        match self {
            Self::Savepoint(savepoint) => savepoint.rollback(),
            Self::Transaction(txn) => txn.rollback().await,
        }
    }
}

/// `$call` on whichever connection the write runs on.
macro_rules! on_inner {
    ($self:ident, $conn:ident => $call:expr) => {
        match $self {
            WriteConn::Held($conn) => $call,
            WriteConn::Transaction($conn) => $call,
            WriteConn::Pool($conn) => $call,
        }
    };
}

/// `$call` on whichever connection the transaction runs on.
macro_rules! on_txn {
    ($self:ident, $conn:ident => $call:expr) => {
        match $self {
            WriteTxn::Savepoint(savepoint) => {
                let $conn = savepoint.held;
                $call
            }
            WriteTxn::Transaction($conn) => $call,
        }
    };
}

macro_rules! connection_trait {
    ($type:ident, $on:ident) => {
        #[async_trait::async_trait]
        impl ConnectionTrait for $type<'_> {
            fn get_database_backend(&self) -> DbBackend {
                $on!(self, c => c.get_database_backend())
            }
            async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
                $on!(self, c => c.execute_raw(stmt).await)
            }
            async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
                $on!(self, c => c.execute_unprepared(sql).await)
            }
            async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
                $on!(self, c => c.query_one_raw(stmt).await)
            }
            async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
                $on!(self, c => c.query_all_raw(stmt).await)
            }
        }
    };
}

connection_trait!(WriteConn, on_inner);
connection_trait!(WriteTxn, on_txn);
