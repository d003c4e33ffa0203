//! Parameters and rows, one form for both ways a query runs (sqlx for PostgreSQL and for
//! writes, this thread's own SQLite connection for reads of a file), so a service maps its
//! rows once.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row as _};

use crate::StoreError;

/// A query parameter: `$1` is the first of the slice, `$2` the second, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    /// Text.
    Text(&'a str),
    /// A 64-bit integer.
    Int(i64),
    /// SQL `NULL` of a text column (PostgreSQL types parameters: `COALESCE($1, name)`
    /// needs a text `NULL`, `COALESCE($1, stock)` an integer one).
    Null,
    /// SQL `NULL` of an integer column.
    NullInt,
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(text: &'a str) -> Self {
        Param::Text(text)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(text: &'a String) -> Self {
        Param::Text(text)
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(value: Option<&'a str>) -> Self {
        value.map_or(Param::Null, Param::Text)
    }
}

impl<'a> From<Option<&'a String>> for Param<'a> {
    fn from(value: Option<&'a String>) -> Self {
        value.map_or(Param::Null, |text| Param::Text(text))
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Param::NullInt, Param::Int)
    }
}

impl From<i64> for Param<'_> {
    fn from(n: i64) -> Self {
        Param::Int(n)
    }
}

impl From<u32> for Param<'_> {
    fn from(n: u32) -> Self {
        Param::Int(n.into())
    }
}

/// The columns of one result row, by position in the `SELECT` list.
pub trait Row {
    /// A `TEXT` column.
    fn text(&self, index: usize) -> Result<String, StoreError>;
    /// A `TEXT` column that may be `NULL`.
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError>;
    /// An integer column (`BIGINT`).
    fn int(&self, index: usize) -> Result<i64, StoreError>;
}

/// A value read from a row.
pub trait FromRow: Sized {
    /// The value of `row`, its columns in the order the query selects them.
    fn from_row(row: &dyn Row) -> Result<Self, StoreError>;
}

impl FromRow for String {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        row.text(0)
    }
}

impl FromRow for i64 {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        row.int(0)
    }
}

impl Row for AnyRow {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        Ok(self.try_get(index)?)
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(index)?)
    }
    fn int(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(index)?)
    }
}

impl Row for rusqlite::Row<'_> {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        Ok(self.get(index)?)
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(index)?)
    }
    fn int(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.get(index)?)
    }
}

/// `sql` with `params` bound, for sqlx.
pub(crate) fn bind<'q>(sql: &'q str, params: &[Param<'q>]) -> Query<'q, Any, AnyArguments<'q>> {
    params
        .iter()
        .fold(sqlx::query(sql), |query, param| match *param {
            Param::Text(text) => query.bind(text),
            Param::Int(n) => query.bind(n),
            Param::Null => query.bind(Option::<String>::None),
            Param::NullInt => query.bind(Option::<i64>::None),
        })
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match *self {
            Param::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Param::Int(n) => ToSqlOutput::Owned(Value::Integer(n)),
            Param::Null | Param::NullInt => ToSqlOutput::Owned(Value::Null),
        })
    }
}
