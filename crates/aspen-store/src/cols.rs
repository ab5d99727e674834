//! One column mapping for every way a row is read: sqlx's SQLite and
//! PostgreSQL rows and the direct lane's ([`crate::direct`]), so a record is
//! decoded by the same code whichever path read it. A column of the wrong
//! type is a corrupt database: an error, never a panic.

use sqlx::Row as _;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use crate::StoreError;

pub(crate) trait Cols {
    fn col<T: Col>(&self, i: usize) -> Result<T, StoreError>;
    fn col_str(&self, i: usize) -> Result<&str, StoreError>;
    fn col_opt_str(&self, i: usize) -> Result<Option<&str>, StoreError>;
    /// A text column's bytes, not checked as UTF-8 where the row's own API
    /// does not check them: for text that is copied as it is, never read
    /// as `str` ([`aspen_domain::wire::Stored`]).
    fn col_opt_text_bytes(&self, i: usize) -> Result<Option<&[u8]>, StoreError> {
        Ok(self.col_opt_str(i)?.map(str::as_bytes))
    }
}

/// A column type [`Cols::col`] reads.
pub(crate) trait Col: Sized {
    fn sqlite(r: &SqliteRow, i: usize) -> Result<Self, StoreError>;
    fn pg(r: &PgRow, i: usize) -> Result<Self, StoreError>;
    fn direct(r: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError>;
}

fn corrupt(i: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt column {i}: {e}"))
}

macro_rules! col {
    ($($t:ty),*) => {$(
        impl Col for $t {
            fn sqlite(r: &SqliteRow, i: usize) -> Result<Self, StoreError> {
                r.try_get(i).map_err(|e| corrupt(i, e))
            }
            fn pg(r: &PgRow, i: usize) -> Result<Self, StoreError> {
                r.try_get(i).map_err(|e| corrupt(i, e))
            }
            fn direct(r: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError> {
                r.get(i).map_err(|e| corrupt(i, e))
            }
        }
    )*};
}
col!(String, Option<String>, i64, Option<i64>);

/// sqlx's rows of either backend, through `try_get`.
macro_rules! sqlx_cols {
    ($($row:ty => $col:ident),*) => {$(
        impl Cols for $row {
            fn col<T: Col>(&self, i: usize) -> Result<T, StoreError> {
                T::$col(self, i)
            }
            fn col_str(&self, i: usize) -> Result<&str, StoreError> {
                self.try_get(i).map_err(|e| corrupt(i, e))
            }
            fn col_opt_str(&self, i: usize) -> Result<Option<&str>, StoreError> {
                self.try_get(i).map_err(|e| corrupt(i, e))
            }
        }
    )*};
}
sqlx_cols!(SqliteRow => sqlite, PgRow => pg);

impl Cols for rusqlite::Row<'_> {
    fn col<T: Col>(&self, i: usize) -> Result<T, StoreError> {
        T::direct(self, i)
    }
    fn col_str(&self, i: usize) -> Result<&str, StoreError> {
        self.col_opt_str(i)?
            .ok_or_else(|| corrupt(i, "NULL where text is stored"))
    }
    /// Checked as UTF-8 with SIMD: `str::from_utf8` on a page's text was 3%
    /// of an AIS page's server CPU (issue 15, twenty-second pass).
    fn col_opt_str(&self, i: usize) -> Result<Option<&str>, StoreError> {
        self.col_opt_text_bytes(i)?
            .map(|t| {
                simdutf8::basic::from_utf8(t).map_err(|_| corrupt(i, "text that is not UTF-8"))
            })
            .transpose()
    }
    fn col_opt_text_bytes(&self, i: usize) -> Result<Option<&[u8]>, StoreError> {
        use rusqlite::types::ValueRef;
        match self.get_ref(i).map_err(|e| corrupt(i, e))? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => Ok(Some(t)),
            v => Err(corrupt(
                i,
                format!("{} where text is stored", v.data_type()),
            )),
        }
    }
}

/// A row read from column `at` on: a record's mapping, written for its own
/// `SELECT`, reads its part of a joined row.
pub(crate) struct At<'r, R>(pub &'r R, pub usize);

impl<R: Cols> Cols for At<'_, R> {
    fn col<T: Col>(&self, i: usize) -> Result<T, StoreError> {
        self.0.col(self.1 + i)
    }
    fn col_str(&self, i: usize) -> Result<&str, StoreError> {
        self.0.col_str(self.1 + i)
    }
    fn col_opt_str(&self, i: usize) -> Result<Option<&str>, StoreError> {
        self.0.col_opt_str(self.1 + i)
    }
    fn col_opt_text_bytes(&self, i: usize) -> Result<Option<&[u8]>, StoreError> {
        self.0.col_opt_text_bytes(self.1 + i)
    }
}
