//! Storage of the bank itself: PSUs, accounts, transactions (keyset
//! pagination), per-account resources, and the sandbox seed marker.

use aspen_domain::{
    Account, AccountResource, Psu, ResourceKind, Transaction, TransactionView, TxSink, World,
};
use async_trait::async_trait;

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedState {
    pub seed: i64,
    pub anchor: String,
    pub bulk: i64,
}

/// A position in an account's transaction order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxCursor {
    pub booking_ms: i64,
    pub transaction_id: String,
}

/// Which transactions a query sees: a booking-time window (inclusive
/// from, exclusive to) and the credit/debit sides allowed (AIS-17, AIS-22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxFilter {
    pub from_ms: i64,
    pub to_ms: i64,
    pub credits: bool,
    pub debits: bool,
}

impl TxFilter {
    pub fn all() -> Self {
        Self {
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            credits: true,
            debits: true,
        }
    }
}

/// What [`WorldStore::transactions_page_summary`] answers besides the
/// transactions, which went to its sink.
#[derive(Debug, Clone, PartialEq)]
pub struct TxPageSummary {
    /// How many transactions went to the sink.
    pub rows: usize,
    /// The page's first and last transactions' positions, in page
    /// (ascending) order; the one where the read ended only when the page
    /// is full (`limit` rows): a read that ends short has nothing beyond it
    /// to link to, and a stored page reads no row's position but the
    /// edges' (issue 15, twenty-fifth pass).
    pub first: Option<TxCursor>,
    pub last: Option<TxCursor>,
    /// The sink had the transactions last first (a page read backwards).
    pub descending: bool,
    /// The filter's count, when asked for.
    pub count: Option<i64>,
    /// The account's first and last booking times, when asked for and the
    /// account has any.
    pub bounds: Option<(i64, i64)>,
}

/// A page as its rows are read: each transaction to the sink, with the
/// first's and the last's positions kept (the page's links start there),
/// and the summary row's answers.
#[doc(hidden)]
pub struct PageRows<'s> {
    sink: &'s mut dyn TxSink,
    /// The rows the read asks for.
    limit: usize,
    rows: usize,
    first: Option<TxCursor>,
    last: TxCursor,
    /// Whether the account exists, once the summary row is read.
    known: Option<bool>,
    count: Option<i64>,
    bounds: Option<(i64, i64)>,
    missing: bool,
}

impl<'s> PageRows<'s> {
    pub(crate) fn new(sink: &'s mut dyn TxSink, limit: usize) -> Self {
        Self {
            sink,
            limit,
            rows: 0,
            first: None,
            last: TxCursor {
                booking_ms: 0,
                transaction_id: String::new(),
            },
            known: None,
            count: None,
            bounds: None,
            missing: false,
        }
    }

    /// Whether the sink takes transactions in their stored form.
    pub(crate) fn takes_stored(&self) -> bool {
        self.sink.takes_stored()
    }

    fn at(&mut self, booking_ms: i64, transaction_id: &str) {
        if self.rows == 0 {
            self.first = Some(TxCursor {
                booking_ms,
                transaction_id: transaction_id.to_string(),
            });
        }
        // Into the same string each time: no allocation a row.
        self.last.booking_ms = booking_ms;
        self.last.transaction_id.clear();
        self.last.transaction_id.push_str(transaction_id);
        self.rows += 1;
    }

    pub(crate) fn tx(&mut self, t: &TransactionView<'_>) {
        self.at(t.booking_ms, t.transaction_id);
        self.sink.entry(t);
    }

    /// A row of [`STORED_COLUMNS`]; `edge` reads its position, which is
    /// read only for the first row and the last one the page can hold
    /// (their positions are what [`PageRows::finish`] answers; two column
    /// reads a row were 5% of an AIS page's instructions). A transaction
    /// without its stored form (written before it was kept) marks the page
    /// [`PageRows::missing`], and the rows after it are passed over: the
    /// page is read again from the columns.
    pub(crate) fn stored<'r>(
        &mut self,
        balance_minor: Option<i64>,
        wire: Option<&[u8]>,
        edge: impl FnOnce() -> Result<(i64, &'r str), StoreError>,
    ) -> Result<(), StoreError> {
        if self.missing {
            return Ok(());
        }
        let Some(wire) = wire.and_then(aspen_domain::wire::Stored::parse) else {
            self.missing = true;
            return Ok(());
        };
        if self.rows == 0 || self.rows + 1 == self.limit {
            let (booking_ms, transaction_id) = edge()?;
            self.at(booking_ms, transaction_id);
        } else {
            self.rows += 1;
        }
        self.sink.stored(&aspen_domain::StoredTx {
            balance_minor,
            wire,
        });
        Ok(())
    }

    /// A transaction on the page lacked its stored form.
    pub(crate) fn missing(&self) -> bool {
        self.missing
    }

    pub(crate) fn summary(&mut self, known: bool, count: Option<i64>, bounds: Option<(i64, i64)>) {
        (self.known, self.count, self.bounds) = (Some(known), count, bounds);
    }

    /// Everything read so far forgotten, the sink's too.
    pub(crate) fn restart(&mut self) {
        self.rows = 0;
        self.first = None;
        (self.known, self.count, self.bounds) = (None, None, None);
        self.missing = false;
        self.sink.restart();
    }

    /// The page's answers: `None` when the account does not exist.
    pub(crate) fn finish(self, backwards: bool) -> Result<Option<TxPageSummary>, StoreError> {
        match self.known {
            None => return Err(StoreError::Backend("page without its summary row".into())),
            Some(false) => return Ok(None),
            Some(true) => {}
        }
        // Where the read ended, only when the page is full (as
        // [`TxPageSummary::last`] says), whichever way it was read.
        let full = self.rows == self.limit;
        let (read_first, read_last) = match self.first {
            Some(first) => (Some(first), full.then_some(self.last)),
            None => (None, None),
        };
        let (first, last) = if backwards {
            (read_last, read_first)
        } else {
            (read_first, read_last)
        };
        Ok(Some(TxPageSummary {
            rows: self.rows,
            first,
            last,
            descending: backwards,
            count: self.count,
            bounds: self.bounds,
        }))
    }
}

#[async_trait]
pub trait WorldStore: Send + Sync {
    async fn seed_state(&self) -> Result<Option<SeedState>, StoreError>;
    /// Writes the whole world in one transaction, unless a world is already
    /// seeded (then nothing changes and `false` is returned). Safe when
    /// several nodes start at once: the marker row is the lock.
    async fn seed_world(&self, world: &World) -> Result<bool, StoreError>;
    /// Takes the bulk history from `from` entries to `to` and appends the
    /// entries to one account, moving its booked balance by their sum, all
    /// in one transaction. The step is claimed first (the marker row moves
    /// only from `from`), so of nodes starting together one appends and
    /// the others get 0.
    async fn seed_bulk(
        &self,
        account_id: &str,
        entries: &mut (dyn Iterator<Item = Transaction> + Send),
        from: i64,
        to: i64,
    ) -> Result<u64, StoreError>;

    async fn psu_by_username(&self, username: &str) -> Result<Option<Psu>, StoreError>;
    async fn psu(&self, psu_id: &str) -> Result<Option<Psu>, StoreError>;
    async fn accounts_for_psu(&self, psu_id: &str) -> Result<Vec<Account>, StoreError>;
    async fn account(&self, account_id: &str) -> Result<Option<Account>, StoreError>;

    /// Up to `limit` transactions strictly after `after` (ascending), or
    /// strictly before `before` (returned ascending too).
    async fn transactions_page(
        &self,
        account_id: &str,
        filter: &TxFilter,
        after: Option<&TxCursor>,
        before: Option<&TxCursor>,
        limit: i64,
    ) -> Result<Vec<Transaction>, StoreError>;
    async fn count_transactions(
        &self,
        account_id: &str,
        filter: &TxFilter,
    ) -> Result<i64, StoreError>;
    /// Earliest and latest booking time of an account's transactions.
    async fn transaction_bounds(&self, account_id: &str) -> Result<Option<(i64, i64)>, StoreError>;
    /// [`WorldStore::transactions_page`] into `sink` as the rows are read,
    /// with, when `summary`, what [`WorldStore::count_transactions`] and
    /// [`WorldStore::transaction_bounds`] answer, and whether the account
    /// exists (`None` when it does not): one statement, so an AIS page is
    /// one round trip however much it needs.
    #[allow(clippy::too_many_arguments)]
    async fn transactions_page_summary(
        &self,
        account_id: &str,
        filter: &TxFilter,
        after: Option<&TxCursor>,
        before: Option<&TxCursor>,
        limit: i64,
        summary: bool,
        sink: &mut dyn TxSink,
    ) -> Result<Option<TxPageSummary>, StoreError>;

    async fn resources(
        &self,
        account_id: &str,
        kind: ResourceKind,
    ) -> Result<Vec<AccountResource>, StoreError>;
    async fn resource(
        &self,
        account_id: &str,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<AccountResource>, StoreError>;
}

/// A transaction's columns, as read into a [`Transaction`].
pub(crate) const TX_COLUMNS: &str = "transaction_id, account_id, booking_ms, value_ms, amount_minor, \
    currency, credit, status, reference, information, balance_minor, detail, detail_parts";
/// How many [`TX_COLUMNS`] there are, counted from the list itself.
pub(crate) const TX_COLUMN_COUNT: usize = column_count(TX_COLUMNS);
/// The columns a transaction is written with: [`TX_COLUMNS`], then its
/// stored form (`aspen_domain::wire::stored`).
pub(crate) const TX_INSERT_COLUMNS: &str = "transaction_id, account_id, booking_ms, value_ms, amount_minor, \
    currency, credit, status, reference, information, balance_minor, detail, detail_parts, wire";
pub(crate) const TX_INSERT_COLUMN_COUNT: usize = column_count(TX_INSERT_COLUMNS);
/// What a page reads of a transaction kept in its stored form: the
/// position its links start from, the running balance (not in the stored
/// form, see `aspen_domain::wire`), and the stored form.
pub(crate) const STORED_COLUMNS: &str = "transaction_id, booking_ms, balance_minor, wire";
pub(crate) const STORED_COLUMN_COUNT: usize = column_count(STORED_COLUMNS);

const fn column_count(list: &str) -> usize {
    let (b, mut i, mut n) = (list.as_bytes(), 0, 1);
    while i < b.len() {
        n += (b[i] == b',') as usize;
        i += 1;
    }
    n
}
pub(crate) const ACCOUNT_COLUMNS: &str = "account_id, psu_id, currency, account_type, account_sub_type, \
    description, nickname, opening_date, identifications, servicer, booked_minor, pending_debits_minor, \
    pending_credits_minor";
/// Rows per multi-row INSERT: 14 columns × 400 stays far below both
/// backends' parameter limits (SQLite's 32,766, PostgreSQL's 65,535)
/// while amortising the round trip.
pub(crate) const BULK_ROWS: usize = 400;

pub(crate) const DAY_MS: i64 = 86_400_000;

/// Days per `tx_blocks` row. A window's count reads its whole blocks
/// there and only the days of its two partial blocks (at most 62 days, two
/// rows a day: credits and debits) from `tx_days`, however long the window
/// is (the sandbox's 200-day bulk history: 400 day rows before, 14 block
/// rows now).
pub(crate) const BLOCK_DAYS: i64 = 32;

/// The `tx_blocks` row a day is counted in.
pub(crate) fn block_of(day: i64) -> i64 {
    day.div_euclid(BLOCK_DAYS)
}

/// Per (account, day, credit) and per (account, block, credit): how many
/// of `txs` each row gains.
pub(crate) type Counts = std::collections::BTreeMap<(String, i64, i64), i64>;

pub(crate) fn day_and_block_counts(txs: &[Transaction]) -> (Counts, Counts) {
    let (mut days, mut blocks) = (Counts::new(), Counts::new());
    for t in txs {
        let credit = matches!(t.credit_debit, aspen_domain::CreditDebit::Credit) as i64;
        let day = t.booking_ms.div_euclid(DAY_MS);
        *days.entry((t.account_id.clone(), day, credit)).or_insert(0) += 1;
        *blocks
            .entry((t.account_id.clone(), block_of(day), credit))
            .or_insert(0) += 1;
    }
    (days, blocks)
}

/// How to count a window: whole blocks from `tx_blocks`, the whole days
/// around them from `tx_days`, and at most two partial-day edges counted
/// on the covering index. Every range is half-open and the parts are
/// disjoint; together they cover the window exactly.
#[derive(Debug, PartialEq)]
pub(crate) struct CountPlan {
    pub blocks: Option<(i64, i64)>,
    pub days: Vec<(i64, i64)>,
    pub edges: Vec<(i64, i64)>,
}

pub(crate) fn count_plan(f: &TxFilter) -> CountPlan {
    let mut plan = CountPlan {
        blocks: None,
        days: Vec::new(),
        edges: Vec::new(),
    };
    if f.from_ms >= f.to_ms {
        return plan;
    }
    let first_full = if f.from_ms == i64::MIN {
        i64::MIN
    } else {
        f.from_ms.div_euclid(DAY_MS) + i64::from(f.from_ms.rem_euclid(DAY_MS) != 0)
    };
    let end_full = if f.to_ms == i64::MAX {
        i64::MAX
    } else {
        f.to_ms.div_euclid(DAY_MS)
    };
    if first_full >= end_full {
        // The window sits inside one or two partial days.
        plan.edges.push((f.from_ms, f.to_ms));
        return plan;
    }
    if f.from_ms != i64::MIN && f.from_ms < first_full * DAY_MS {
        plan.edges.push((f.from_ms, first_full * DAY_MS));
    }
    if f.to_ms != i64::MAX && end_full * DAY_MS < f.to_ms {
        plan.edges.push((end_full * DAY_MS, f.to_ms));
    }
    // The whole days [first_full, end_full): whole blocks inside them, the
    // days of a partial block at either end day by day. An open end stays
    // open (no day row lies beyond the sentinels).
    let first_block = if first_full == i64::MIN {
        i64::MIN
    } else {
        block_of(first_full) + i64::from(first_full.rem_euclid(BLOCK_DAYS) != 0)
    };
    let end_block = if end_full == i64::MAX {
        i64::MAX
    } else {
        block_of(end_full)
    };
    if first_block >= end_block {
        plan.days.push((first_full, end_full));
        return plan;
    }
    plan.blocks = Some((first_block, end_block));
    if first_full != i64::MIN && first_full < first_block * BLOCK_DAYS {
        plan.days.push((first_full, first_block * BLOCK_DAYS));
    }
    if end_full != i64::MAX && end_block * BLOCK_DAYS < end_full {
        plan.days.push((end_block * BLOCK_DAYS, end_full));
    }
    plan
}

/// Where a page's walk enters the index, `($6, $7)` of [`page_sql`]: the
/// cursor, or the filter's edge when that comes first. The edge is folded
/// in because SQLite (3.51) seeks on only one lower (or upper) bound of
/// `booking_ms`: given both `booking_ms >= $2` and the cursor's row value,
/// it entered at the window's start and stepped over every entry before
/// the cursor, so a page 10,000 entries deep cost 1 ms against 0.16 ms for
/// the first (issue 15, twentieth pass). `(booking_ms, transaction_id) >=
/// (from, '')` is `booking_ms >= from` and `< (to, '')` is `booking_ms <
/// to`, since no text sorts before `''`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keyset {
    pub backwards: bool,
    pub ms: i64,
    pub id: String,
    /// The position's own row is on the page (`>=`): a forward walk from
    /// the window's start.
    pub inclusive: bool,
}

pub(crate) fn keyset(f: &TxFilter, after: Option<&TxCursor>, before: Option<&TxCursor>) -> Keyset {
    let edge = |ms: i64, inclusive: bool, backwards: bool| Keyset {
        backwards,
        ms,
        id: String::new(),
        inclusive,
    };
    let at = |c: &TxCursor, backwards: bool| Keyset {
        backwards,
        ms: c.booking_ms,
        id: c.transaction_id.clone(),
        inclusive: false,
    };
    match (before, after) {
        (Some(c), _) if (c.booking_ms, c.transaction_id.as_str()) > (f.to_ms, "") => {
            edge(f.to_ms, false, true)
        }
        (Some(c), _) => at(c, true),
        (None, Some(c)) if c.booking_ms >= f.from_ms => at(c, false),
        (None, _) => edge(f.from_ms, true, false),
    }
}

/// The keyset page statement (`$1..$7`): rows after (or, with
/// `backwards`, before) the position `($6, $7)` that [`keyset`] gives, in
/// the walk's order, each after the `lead` columns. The window's bound on
/// the side the walk enters is folded into the position; for `sqlite` it
/// is kept only as a check that no index can use (`+booking_ms`), so that
/// SQLite enters the index at the position (see [`keyset`]). PostgreSQL
/// gets both bounds as index conditions and starts at the tighter one
/// (measured, deep pages included); given `+booking_ms`, its generic plan
/// took the count index and sorted the account's whole history (5 ms a
/// first page against 0.3).
///
/// The limit is written into the text, not bound: SQLite (3.51) plans
/// with a bound LIMIT's value and marks the statement to be prepared again
/// whenever that parameter is bound, which sqlx does on every execution
/// (measured: a re-parse and re-plan per page, a third of the page
/// statement's cost). A page has few distinct limits, so the statement
/// cache still holds them all.
pub(crate) fn page_sql(k: &Keyset, limit: i64, lead: &str, columns: &str, sqlite: bool) -> String {
    let (cmp, order) = match (k.backwards, k.inclusive) {
        (true, _) => ("<", "DESC"),
        (false, false) => (">", "ASC"),
        (false, true) => (">=", "ASC"),
    };
    let (from, to) = match (sqlite, k.backwards) {
        (false, _) => ("booking_ms", "booking_ms"),
        (true, true) => ("booking_ms", "+booking_ms"),
        (true, false) => ("+booking_ms", "booking_ms"),
    };
    format!(
        "SELECT {lead}{columns} FROM transactions WHERE account_id = $1 AND {from} >= $2 \
         AND {to} < $3 AND credit IN ($4, $5) AND (booking_ms, transaction_id) {cmp} ($6, $7) \
         ORDER BY booking_ms {order}, transaction_id {order} LIMIT {limit}"
    )
}

/// [`page_sql`] for SQLite's direct lane, without the conditions that
/// hold for every row of the account (issue 15, twenty-third pass): each
/// one SQLite tests on every row it steps on, and a first page of an open
/// window with both sides allowed needs none of them (22 VM steps a row
/// become 8; the window's end alone was a record comparison a row).
/// - `($6, $7)` at the window's edge (no cursor) is a bound on
///   `booking_ms` alone (see [`Keyset`]), and none at all at the edge of
///   an open window; the window's bound on that side is then the same
///   bound, so it goes too.
/// - An open bound (`i64::MIN`, `i64::MAX`) limits nothing: no booking
///   time reaches either, as none is a date (chrono's range ends in the
///   year 262,143, about 8.2e15 ms).
/// - `credit IN ($4, $5)` when both sides are allowed.
///
/// Parameters left out are left unbound (the lane binds `$n` by name).
pub(crate) fn lane_page_sql(k: &Keyset, f: &TxFilter, limit: i64, columns: &str) -> String {
    let (cmp, order) = match (k.backwards, k.inclusive) {
        (true, _) => ("<", "DESC"),
        (false, false) => (">", "ASC"),
        (false, true) => (">=", "ASC"),
    };
    let mut cond = String::from("account_id = $1");
    // At the window's edge the position is `(edge, '')`: no text sorts
    // before `''`, so it bounds `booking_ms` alone, and it is the window's
    // own bound on that side.
    let at_edge = k.id.is_empty() && (k.backwards || k.inclusive);
    let (from_open, to_open) = (f.from_ms == i64::MIN, f.to_ms == i64::MAX);
    if !at_edge {
        cond.push_str(&format!(" AND (booking_ms, transaction_id) {cmp} ($6, $7)"));
    } else if k.ms != if k.backwards { i64::MAX } else { i64::MIN } {
        cond.push_str(&format!(" AND booking_ms {cmp} $6"));
    }
    // The window's bound on the side the walk enters is only checked (the
    // `+`: see [`page_sql`]); on the far side it ends the index range.
    let (from, to) = if k.backwards {
        ("booking_ms", "+booking_ms")
    } else {
        ("+booking_ms", "booking_ms")
    };
    let (from_folded, to_folded) = (at_edge && !k.backwards, at_edge && k.backwards);
    if !(from_open || from_folded) {
        cond.push_str(&format!(" AND {from} >= $2"));
    }
    if !(to_open || to_folded) {
        cond.push_str(&format!(" AND {to} < $3"));
    }
    if !(f.credits && f.debits) {
        cond.push_str(" AND credit IN ($4, $5)");
    }
    format!(
        "SELECT {columns} FROM transactions WHERE {cond} \
         ORDER BY booking_ms {order}, transaction_id {order} LIMIT {limit}"
    )
}

/// The page and, in one more row, what the page needs besides: whether
/// the account exists, and (with `counts`) the count as [`count_plan`]
/// splits it (`$8..$17`, see [`count_params`] and [`summary_sql`]) and the account's first and last booking times (two
/// index probes: SQLite optimises a lone MIN or MAX, not both in one
/// query). Page rows lead with four NULLs, the extra row ends with the
/// transaction columns' NULLs: a UNION ALL streams both, where joining the
/// one summary row to the page made SQLite copy the page into a temporary
/// table and sort it again (measured: more than the page itself). Both
/// backends run a UNION ALL's branches in turn and keep the page
/// subquery's order (sorting again in Rust could disagree with the
/// database's collation of `transaction_id`, which the keyset uses); the
/// store suite walks every page both ways on both backends.
pub(crate) fn page_summary_sql(
    k: &Keyset,
    limit: i64,
    counts: Option<&[i64; 10]>,
    stored: bool,
    sqlite: bool,
) -> String {
    let (columns, count) = page_columns(stored);
    // Typed NULLs in the first branch: PostgreSQL takes a subquery's bare
    // NULL to be text.
    let page = page_sql(
        k,
        limit,
        "CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), ",
        columns,
        sqlite,
    );
    let tx_nulls = vec!["NULL"; count].join(", ");
    format!(
        "SELECT * FROM ({page}) AS page UNION ALL {}, {tx_nulls}",
        summary_sql(counts)
    )
}

/// What a page reads of each transaction: its stored form
/// ([`STORED_COLUMNS`]), or all its columns; and how many that is.
pub(crate) fn page_columns(stored: bool) -> (&'static str, usize) {
    if stored {
        (STORED_COLUMNS, STORED_COLUMN_COUNT)
    } else {
        (TX_COLUMNS, TX_COLUMN_COUNT)
    }
}

/// The summary row of [`page_summary_sql`] on its own (same parameters):
/// whether the account exists, and with `counts` ([`count_params`]) its
/// count and period.
///
/// On SQLite's direct lane the page and this run as two statements in one
/// read transaction ([`crate::direct::Direct::read_pair`]): with no round
/// trip to save there, the compound statement's co-routines (each page row
/// copied into the compound's registers, then out again) cost more VM
/// steps than the page itself (measured with `.stats vmstep`, 10,000-entry
/// history: first page 8,204 steps as one statement, 5,506 as two; a later
/// page 5,106 and 2,370 plus one index probe).
///
/// The count sums only the parts of [`count_plan`] whose range is not
/// empty (an empty half-open range counts nothing): each part is a
/// subquery, which PostgreSQL sets up, runs and shuts down even when its
/// range is empty, about 20 µs of its CPU each (issue 15, twenty-seventh
/// pass). A window open at both ends, as every first page of an unfiltered
/// request, needs only the whole blocks. The parameters stay bound as
/// [`count_params`] binds them; a part left out leaves its own unused.
pub(crate) fn summary_sql(counts: Option<&[i64; 10]>) -> &'static str {
    // Built once: a kilobyte formatted for every page was 0.5% of its
    // server CPU. Entry 0 is without a summary, 1 + parts with one.
    static SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        std::iter::once(build_summary_sql(None))
            .chain((0..1 << COUNT_PARTS.len()).map(|parts| build_summary_sql(Some(parts))))
            .collect()
    });
    &SQL[counts.map_or(0, |c| 1 + count_parts(c))]
}

/// The count's parts, in [`count_params`]'s order: the whole blocks
/// (`$8..$9`), the two partial-day edges (`$10..$13`), the days of the two
/// partial blocks (`$14..$17`).
const COUNT_PARTS: [&str; 5] = [
    "(SELECT COALESCE(SUM(n), 0) FROM tx_blocks WHERE account_id = $1 AND block >= $8 \
     AND block < $9 AND credit IN ($4, $5))",
    "(SELECT COUNT(*) FROM transactions WHERE account_id = $1 AND booking_ms >= $10 \
     AND booking_ms < $11 AND credit IN ($4, $5))",
    "(SELECT COUNT(*) FROM transactions WHERE account_id = $1 AND booking_ms >= $12 \
     AND booking_ms < $13 AND credit IN ($4, $5))",
    "(SELECT COALESCE(SUM(n), 0) FROM tx_days WHERE account_id = $1 AND day >= $14 \
     AND day < $15 AND credit IN ($4, $5))",
    "(SELECT COALESCE(SUM(n), 0) FROM tx_days WHERE account_id = $1 AND day >= $16 \
     AND day < $17 AND credit IN ($4, $5))",
];

/// Which of [`COUNT_PARTS`] a window's [`count_params`] give a range that
/// is not empty, one bit each.
fn count_parts(counts: &[i64; 10]) -> usize {
    counts
        .chunks_exact(2)
        .enumerate()
        .filter(|(_, range)| range[0] < range[1])
        .fold(0, |parts, (i, _)| parts | 1 << i)
}

fn build_summary_sql(parts: Option<usize>) -> String {
    let (total, lo, hi) = match parts {
        Some(parts) => {
            let sum: Vec<&str> = COUNT_PARTS
                .iter()
                .enumerate()
                .filter(|(i, _)| parts & 1 << i != 0)
                .map(|(_, part)| *part)
                .collect();
            let sum = if sum.is_empty() {
                "0".to_owned()
            } else {
                sum.join(" + ")
            };
            (
                format!("CAST({sum} AS BIGINT)"),
                "(SELECT booking_ms FROM transactions WHERE account_id = $1 ORDER BY booking_ms ASC LIMIT 1)",
                "(SELECT booking_ms FROM transactions WHERE account_id = $1 ORDER BY booking_ms DESC LIMIT 1)",
            )
        }
        None => ("NULL".to_owned(), "NULL", "NULL"),
    };
    format!("SELECT (SELECT COUNT(*) FROM accounts WHERE account_id = $1), {total}, {lo}, {hi}")
}

/// [`count_plan`]'s ranges as [`summary_sql`] binds them: `$8..$9` the
/// whole blocks, `$10..$13` the two partial-day edges, `$14..$17` the
/// whole days of the two partial blocks; an unused part is an empty range.
pub(crate) fn count_params(f: &TxFilter) -> [i64; 10] {
    let plan = count_plan(f);
    let (b0, b1) = plan.blocks.unwrap_or((0, 0));
    let mut e = [(0, 0); 2];
    for (slot, edge) in e.iter_mut().zip(plan.edges) {
        *slot = edge;
    }
    let mut d = [(0, 0); 2];
    for (slot, days) in d.iter_mut().zip(plan.days) {
        *slot = days;
    }
    [
        b0, b1, e[0].0, e[0].1, e[1].0, e[1].1, d[0].0, d[0].1, d[1].0, d[1].1,
    ]
}

pub(crate) fn kind_from(s: &str) -> ResourceKind {
    match s {
        "beneficiary" => ResourceKind::Beneficiary,
        "direct-debit" => ResourceKind::DirectDebit,
        "standing-order" => ResourceKind::StandingOrder,
        "scheduled-payment" => ResourceKind::ScheduledPayment,
        "statement" => ResourceKind::Statement,
        "product" => ResourceKind::Product,
        "offer" => ResourceKind::Offer,
        _ => ResourceKind::Party,
    }
}

/// A multi-row INSERT. SQLite gets anonymous `?` parameters: with
/// numbered ones it resolves every parameter's name by a linear search,
/// which turns a 4,800-parameter statement quadratic (84% of seeding time
/// when measured).
pub(crate) fn multi_insert_sql(rows: usize, numbered: bool) -> String {
    let mut sql = format!("INSERT INTO transactions ({TX_INSERT_COLUMNS}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..TX_INSERT_COLUMN_COUNT {
            if c > 0 {
                sql.push(',');
            }
            if numbered {
                sql.push_str(&format!("${}", r * TX_INSERT_COLUMN_COUNT + c + 1));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

#[macro_export]
#[doc(hidden)]
macro_rules! impl_world_store {
    ($store:ty, $row:ty, $db:ty) => {

        /// A transaction from [`$crate::world::TX_COLUMNS`] starting at column `o`.
        fn tx_from_row_at(r: &impl $crate::cols::Cols, o: usize) -> Result<aspen_domain::Transaction, $crate::StoreError> {
            tx_view_at(r, o).map(|t| t.to_transaction())
        }

        /// A transaction's columns from `o` on, borrowed from the row.
        fn tx_view_at<R: $crate::cols::Cols>(r: &R, o: usize) -> Result<aspen_domain::TransactionView<'_>, $crate::StoreError> {
            Ok(aspen_domain::TransactionView {
                transaction_id: r.col_str(o)?,
                account_id: r.col_str(o + 1)?,
                booking_ms: r.col(o + 2)?,
                value_ms: r.col(o + 3)?,
                amount_minor: r.col(o + 4)?,
                currency: r.col_str(o + 5)?,
                credit_debit: if r.col::<i64>(o + 6)? != 0 {
                    aspen_domain::CreditDebit::Credit
                } else {
                    aspen_domain::CreditDebit::Debit
                },
                status: r.col_str(o + 7)?,
                reference: r.col_opt_str(o + 8)?,
                information: r.col_opt_str(o + 9)?,
                balance_minor: r.col(o + 10)?,
                detail: aspen_domain::DetailView::from_stored(r.col_str(o + 11)?, r.col_opt_str(o + 12)?)
                    .map_err(|e| $crate::StoreError::Backend(format!("corrupt JSON column: {e}")))?,
            })
        }

        /// The summary row of [`$crate::world::page_summary_sql`] or of
        /// [`$crate::world::summary_sql`], from column `o` on.
        fn summary_row_at(r: &impl $crate::cols::Cols, o: usize, page: &mut $crate::world::PageRows<'_>) -> Result<(), $crate::StoreError> {
            page.summary(
                r.col::<i64>(o)? != 0,
                r.col(o + 1)?,
                r.col::<Option<i64>>(o + 2)?.zip(r.col::<Option<i64>>(o + 3)?),
            );
            Ok(())
        }

        /// A transaction in [`$crate::world::STORED_COLUMNS`] from column `o`.
        fn stored_row_at(r: &impl $crate::cols::Cols, o: usize, page: &mut $crate::world::PageRows<'_>) -> Result<(), $crate::StoreError> {
            page.stored(r.col(o + 2)?, r.col_opt_text_bytes(o + 3)?, || {
                Ok((r.col(o + 1)?, r.col_str(o)?))
            })
        }

        /// A row of [`$crate::world::page_summary_sql`]: a transaction
        /// (its `stored` form or its columns), or the summary row (its
        /// first column not NULL).
        fn page_row(r: &impl $crate::cols::Cols, stored: bool, page: &mut $crate::world::PageRows<'_>) -> Result<(), $crate::StoreError> {
            match r.col::<Option<i64>>(0)? {
                None if stored => stored_row_at(r, 4, page)?,
                None => page.tx(&tx_view_at(r, 4)?),
                Some(_) => summary_row_at(r, 0, page)?,
            }
            Ok(())
        }

        fn account_from_row(r: &impl $crate::cols::Cols) -> Result<aspen_domain::Account, $crate::StoreError> {
            let idents: Vec<aspen_domain::AccountIdentification> = serde_json::from_str(r.col_str(8)?)
                .map_err(|e| $crate::StoreError::Backend(format!("corrupt identifications: {e}")))?;
            Ok(aspen_domain::Account {
                account_id: r.col(0)?,
                psu_id: r.col(1)?,
                currency: r.col(2)?,
                account_type: r.col(3)?,
                account_sub_type: r.col(4)?,
                description: r.col(5)?,
                nickname: r.col(6)?,
                opening_date: r.col(7)?,
                identifications: idents,
                servicer: r
                    .col_opt_str(9)?
                    .map($crate::auth::parse_json)
                    .transpose()?,
                booked_minor: r.col(10)?,
                pending_debits_minor: r.col(11)?,
                pending_credits_minor: r.col(12)?,
            })
        }

        fn psu_from_row(r: &$row) -> Result<aspen_domain::Psu, $crate::StoreError> {
            use sqlx::Row;
            Ok(aspen_domain::Psu {
                id: r.get(0),
                username: r.get(1),
                password_hash: r.get(2),
                name: r.get(3),
                email: r.get(4),
                party: $crate::auth::parse_json(r.get::<&str, _>(5))?,
            })
        }

        fn bind_tx<'q>(
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            t: &aspen_domain::Transaction,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            q.bind(t.transaction_id.clone())
                .bind(t.account_id.clone())
                .bind(t.booking_ms)
                .bind(t.value_ms)
                .bind(t.amount_minor)
                .bind(t.currency.clone())
                .bind(matches!(t.credit_debit, aspen_domain::CreditDebit::Credit) as i64)
                .bind(t.status.clone())
                .bind(t.reference.clone())
                .bind(t.information.clone())
                .bind(t.balance_minor)
                .bind(t.detail.get().to_string())
                .bind(t.detail.index())
                .bind(aspen_domain::wire::stored(&t.view()))
        }

        async fn insert_transactions(
            conn: &mut <$db as sqlx::Database>::Connection,
            txs: &[aspen_domain::Transaction],
        ) -> Result<(), $crate::StoreError> {
            // The day and block counts move in the same transaction as the rows.
            let (days, blocks) = $crate::world::day_and_block_counts(txs);
            for (sql, counts) in [
                (
                    "INSERT INTO tx_days (account_id, day, credit, n) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (account_id, day, credit) DO UPDATE SET n = tx_days.n + excluded.n",
                    days,
                ),
                (
                    "INSERT INTO tx_blocks (account_id, block, credit, n) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (account_id, block, credit) DO UPDATE SET n = tx_blocks.n + excluded.n",
                    blocks,
                ),
            ] {
                for ((account, at, credit), n) in counts {
                    sqlx::query(sql)
                        .bind(account)
                        .bind(at)
                        .bind(credit)
                        .bind(n)
                        .execute(&mut *conn)
                        .await
                        .map_err($crate::StoreError::from)?;
                }
            }
            let numbered = <$db as sqlx::Database>::NAME != "SQLite";
            // Built only for a bulk load: with numbered parameters the
            // full-size text costs ~4M instructions, which a payment's one
            // ledger entry paid every time.
            let mut full: Option<String> = None;
            for chunk in txs.chunks($crate::world::BULK_ROWS) {
                let sql = if chunk.len() == $crate::world::BULK_ROWS {
                    full.get_or_insert_with(|| $crate::world::multi_insert_sql($crate::world::BULK_ROWS, numbered))
                        .clone()
                } else {
                    $crate::world::multi_insert_sql(chunk.len(), numbered)
                };
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for t in chunk {
                    q = bind_tx(q, t);
                }
                q.execute(&mut *conn).await.map_err($crate::StoreError::from)?;
            }
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::world::WorldStore for $store {
            async fn seed_state(&self) -> Result<Option<$crate::world::SeedState>, $crate::StoreError> {
                let row: Option<$row> = sqlx::query("SELECT seed, anchor, bulk FROM sandbox_meta WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?;
                use sqlx::Row;
                Ok(row.map(|r| $crate::world::SeedState { seed: r.get(0), anchor: r.get(1), bulk: r.get(2) }))
            }

            async fn seed_world(&self, w: &aspen_domain::World) -> Result<bool, $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
                let claimed = sqlx::query(
                    "INSERT INTO sandbox_meta (id, seed, anchor, bulk, seeded_at) VALUES (1, $1, $2, 0, $3) ON CONFLICT (id) DO NOTHING",
                )
                .bind(w.seed as i64)
                .bind(&w.anchor)
                .bind(chrono::Utc::now().timestamp_millis())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !claimed {
                    tx.rollback().await?;
                    return Ok(false);
                }
                for p in &w.psus {
                    sqlx::query("INSERT INTO psus (psu_id, username, password_hash, name, email, party) VALUES ($1,$2,$3,$4,$5,$6)")
                        .bind(&p.id)
                        .bind(&p.username)
                        .bind(&p.password_hash)
                        .bind(&p.name)
                        .bind(&p.email)
                        .bind(p.party.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                let sql = format!(
                    "INSERT INTO accounts ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                    $crate::world::ACCOUNT_COLUMNS
                );
                for a in &w.accounts {
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(&a.account_id)
                        .bind(&a.psu_id)
                        .bind(&a.currency)
                        .bind(&a.account_type)
                        .bind(&a.account_sub_type)
                        .bind(&a.description)
                        .bind(&a.nickname)
                        .bind(a.opening_date)
                        .bind(serde_json::to_string(&a.identifications).unwrap_or_default())
                        .bind(a.servicer.as_ref().map(|s| s.to_string()))
                        .bind(a.booked_minor)
                        .bind(a.pending_debits_minor)
                        .bind(a.pending_credits_minor)
                        .execute(&mut *tx)
                        .await?;
                }
                insert_transactions(&mut tx, &w.transactions).await?;
                for r in &w.resources {
                    sqlx::query("INSERT INTO account_resources (account_id, kind, resource_id, sort_key, body) VALUES ($1,$2,$3,$4,$5)")
                        .bind(&r.account_id)
                        .bind(r.kind.as_str())
                        .bind(&r.resource_id)
                        .bind(&r.sort_key)
                        .bind(r.body.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn seed_bulk(
                &self,
                account_id: &str,
                entries: &mut (dyn Iterator<Item = aspen_domain::Transaction> + Send),
                from: i64,
                to: i64,
            ) -> Result<u64, $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
                // The claim: a second node meets this row's lock, waits for
                // the first to commit, and then finds the step taken.
                let claimed = sqlx::query("UPDATE sandbox_meta SET bulk = $1 WHERE id = 1 AND bulk = $2")
                    .bind(to)
                    .bind(from)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if !claimed {
                    tx.rollback().await?;
                    return Ok(0);
                }
                // The account's row before the day and block counts, in the
                // order a payment takes them: the other order could deadlock
                // with a payment on this account (PostgreSQL would abort one).
                sqlx::query("UPDATE accounts SET booked_minor = booked_minor WHERE account_id = $1")
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                // A large page cache keeps SQLite's index B-trees in memory
                // while a million rows go in; reset afterwards, as pooled
                // connections live on.
                let sqlite = <$db as sqlx::Database>::NAME == "SQLite";
                if sqlite {
                    sqlx::query("PRAGMA cache_size = -262144").execute(&mut *tx).await?;
                }
                let mut n = 0u64;
                let mut delta = 0i64;
                let mut buf = Vec::with_capacity($crate::world::BULK_ROWS * 8);
                loop {
                    buf.clear();
                    for _ in 0..$crate::world::BULK_ROWS * 8 {
                        match entries.next() {
                            Some(t) => buf.push(t),
                            None => break,
                        }
                    }
                    if buf.is_empty() {
                        break;
                    }
                    delta += buf.iter().map(|t| t.signed_minor()).sum::<i64>();
                    n += buf.len() as u64;
                    insert_transactions(&mut tx, &buf).await?;
                }
                sqlx::query("UPDATE accounts SET booked_minor = booked_minor + $2 WHERE account_id = $1")
                    .bind(account_id)
                    .bind(delta)
                    .execute(&mut *tx)
                    .await?;
                if sqlite {
                    sqlx::query("PRAGMA cache_size = -2000").execute(&mut *tx).await?;
                }
                tx.commit().await?;
                if !sqlite {
                    // Fresh statistics, or PostgreSQL's planner still
                    // believes the table tiny and sorts a million rows to
                    // serve one page (measured: 700 ms instead of 3 ms).
                    sqlx::query("ANALYZE transactions").execute(&self.pool).await?;
                    sqlx::query("ANALYZE tx_days").execute(&self.pool).await?;
                    sqlx::query("ANALYZE tx_blocks").execute(&self.pool).await?;
                }
                Ok(n)
            }

            async fn psu_by_username(&self, username: &str) -> Result<Option<aspen_domain::Psu>, $crate::StoreError> {
                let row: Option<$row> = sqlx::query(
                    "SELECT psu_id, username, password_hash, name, email, party FROM psus WHERE username = $1",
                )
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| psu_from_row(&r)).transpose()
            }

            async fn psu(&self, psu_id: &str) -> Result<Option<aspen_domain::Psu>, $crate::StoreError> {
                let row: Option<$row> = sqlx::query(
                    "SELECT psu_id, username, password_hash, name, email, party FROM psus WHERE psu_id = $1",
                )
                .bind(psu_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| psu_from_row(&r)).transpose()
            }

            async fn accounts_for_psu(&self, psu_id: &str) -> Result<Vec<aspen_domain::Account>, $crate::StoreError> {
                let sql = format!("SELECT {} FROM accounts WHERE psu_id = $1 ORDER BY account_id", $crate::world::ACCOUNT_COLUMNS);
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(psu_id).fetch_all(&self.pool).await?;
                rows.iter().map(account_from_row).collect()
            }

            async fn account(&self, account_id: &str) -> Result<Option<aspen_domain::Account>, $crate::StoreError> {
                let sql = format!("SELECT {} FROM accounts WHERE account_id = $1", $crate::world::ACCOUNT_COLUMNS);
                if let Some(d) = self.direct()
                    && let Some(a) = d.read_opt(&sql, &[&account_id], |r| account_from_row(r))?
                {
                    return Ok(a);
                }
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).fetch_optional(&self.pool).await?;
                row.map(|r| account_from_row(&r)).transpose()
            }

            async fn transactions_page(
                &self,
                account_id: &str,
                f: &$crate::world::TxFilter,
                after: Option<&$crate::world::TxCursor>,
                before: Option<&$crate::world::TxCursor>,
                limit: i64,
            ) -> Result<Vec<aspen_domain::Transaction>, $crate::StoreError> {
                // Keyset pagination: the (booking_ms, transaction_id) index
                // is entered at the cursor, so every page costs the same
                // however deep it is.
                let k = $crate::world::keyset(f, after, before);
                let sql = $crate::world::page_sql(&k, limit.max(0), "", $crate::world::TX_COLUMNS, <$db as sqlx::Database>::NAME == "SQLite");
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(account_id)
                    .bind(f.from_ms)
                    .bind(f.to_ms)
                    .bind(if f.credits { 1i64 } else { -1 })
                    .bind(if f.debits { 0i64 } else { -1 })
                    .bind(k.ms)
                    .bind(&k.id)
                    .fetch_all(&self.pool)
                    .await?;
                let mut out = rows.iter().map(|r| tx_from_row_at(r, 0)).collect::<Result<Vec<_>, _>>()?;
                if k.backwards {
                    out.reverse();
                }
                Ok(out)
            }

            async fn count_transactions(&self, account_id: &str, f: &$crate::world::TxFilter) -> Result<i64, $crate::StoreError> {
                let plan = $crate::world::count_plan(f);
                let mut total = 0i64;
                // Each part of the plan is one sum over its own range.
                const BLOCKS: &str = "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM tx_blocks WHERE account_id = $1 AND block >= $2 AND block < $3 AND credit IN ($4, $5)";
                const DAYS: &str = "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM tx_days WHERE account_id = $1 AND day >= $2 AND day < $3 AND credit IN ($4, $5)";
                const EDGE: &str = "SELECT COUNT(*) FROM transactions WHERE account_id = $1 AND booking_ms >= $2 AND booking_ms < $3 AND credit IN ($4, $5)";
                let parts = plan
                    .blocks
                    .map(|b| (BLOCKS, b))
                    .into_iter()
                    .chain(plan.days.iter().map(|&d| (DAYS, d)))
                    .chain(plan.edges.iter().map(|&e| (EDGE, e)));
                for (sql, (from, to)) in parts {
                    let row: $row = sqlx::query(sql)
                        .bind(account_id)
                        .bind(from)
                        .bind(to)
                        .bind(if f.credits { 1i64 } else { -1 })
                        .bind(if f.debits { 0i64 } else { -1 })
                        .fetch_one(&self.pool)
                        .await?;
                    total += r_count(&row);
                }
                Ok(total)
            }

            async fn transaction_bounds(&self, account_id: &str) -> Result<Option<(i64, i64)>, $crate::StoreError> {
                // Two index probes: SQLite optimises a lone MIN or MAX, not both
                // in one query (that scans the account's whole history).
                let row: $row = sqlx::query(
                    "SELECT (SELECT booking_ms FROM transactions WHERE account_id = $1 ORDER BY booking_ms ASC LIMIT 1), \
                            (SELECT booking_ms FROM transactions WHERE account_id = $1 ORDER BY booking_ms DESC LIMIT 1)",
                )
                    .bind(account_id)
                    .fetch_one(&self.pool)
                    .await?;
                use sqlx::Row;
                let min: Option<i64> = row.get(0);
                let max: Option<i64> = row.get(1);
                Ok(min.zip(max))
            }

            async fn transactions_page_summary(
                &self,
                account_id: &str,
                f: &$crate::world::TxFilter,
                after: Option<&$crate::world::TxCursor>,
                before: Option<&$crate::world::TxCursor>,
                limit: i64,
                summary: bool,
                sink: &mut dyn aspen_domain::TxSink,
            ) -> Result<Option<$crate::world::TxPageSummary>, $crate::StoreError> {
                let k = $crate::world::keyset(f, after, before);
                let (credit, debit) = (if f.credits { 1i64 } else { -1 }, if f.debits { 0i64 } else { -1 });
                let counts = $crate::world::count_params(f);
                let mut page = $crate::world::PageRows::new(sink, usize::try_from(limit).unwrap_or(0));
                let sqlite = <$db as sqlx::Database>::NAME == "SQLite";
                // The stored form when the sink takes it; the columns when it
                // does not, or when a transaction on the page lacks it.
                let mut stored = page.takes_stored();
                // A read from the columns always ends the loop.
                loop {
                    let done = |page: &$crate::world::PageRows<'_>| !stored || !page.missing();
                    if let Some(d) = self.direct() {
                        let mut params: Vec<&dyn rusqlite::ToSql> =
                            vec![&account_id, &f.from_ms, &f.to_ms, &credit, &debit, &k.ms, &k.id];
                        if summary {
                            params.extend(counts.iter().map(|c| c as &dyn rusqlite::ToSql));
                        }
                        let columns = $crate::world::page_columns(stored).0;
                        let sql = $crate::world::lane_page_sql(&k, f, limit.max(0), columns);
                        // Each transaction is written out from the row SQLite
                        // steps on, never copied into a `Transaction`.
                        let read = d.read_pair(&sql, $crate::world::summary_sql(summary.then_some(&counts)), &params, &mut |second, r| {
                            if second {
                                summary_row_at(r, 0, &mut page)
                            } else if stored {
                                stored_row_at(r, 0, &mut page)
                            } else {
                                page.tx(&tx_view_at(r, 0)?);
                                Ok(())
                            }
                        })?;
                        if read.is_some() && done(&page) {
                            return page.finish(k.backwards);
                        }
                        page.restart();
                        if read.is_some() {
                            stored = false;
                            continue;
                        }
                    }
                    let sql = $crate::world::page_summary_sql(&k, limit.max(0), summary.then_some(&counts), stored, sqlite);
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(account_id)
                        .bind(f.from_ms)
                        .bind(f.to_ms)
                        .bind(credit)
                        .bind(debit)
                        .bind(k.ms)
                        .bind(&k.id);
                    if summary {
                        for p in counts {
                            q = q.bind(p);
                        }
                    }
                    let rows: Vec<$row> = q.fetch_all(&self.pool).await?;
                    for r in &rows {
                        page_row(r, stored, &mut page)?;
                    }
                    if done(&page) {
                        return page.finish(k.backwards);
                    }
                    page.restart();
                    stored = false;
                }
            }

            async fn resources(&self, account_id: &str, kind: aspen_domain::ResourceKind) -> Result<Vec<aspen_domain::AccountResource>, $crate::StoreError> {
                let rows: Vec<$row> = sqlx::query(
                    "SELECT account_id, kind, resource_id, sort_key, body FROM account_resources WHERE account_id = $1 AND kind = $2 ORDER BY sort_key, resource_id",
                )
                .bind(account_id)
                .bind(kind.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(resource_from_row).collect()
            }

            async fn resource(&self, account_id: &str, kind: aspen_domain::ResourceKind, id: &str) -> Result<Option<aspen_domain::AccountResource>, $crate::StoreError> {
                let row: Option<$row> = sqlx::query(
                    "SELECT account_id, kind, resource_id, sort_key, body FROM account_resources WHERE account_id = $1 AND kind = $2 AND resource_id = $3",
                )
                .bind(account_id)
                .bind(kind.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| resource_from_row(&r)).transpose()
            }
        }

        fn r_count(row: &$row) -> i64 {
            use sqlx::Row;
            row.get::<i64, _>(0)
        }

        fn resource_from_row(r: &$row) -> Result<aspen_domain::AccountResource, $crate::StoreError> {
            use sqlx::Row;
            Ok(aspen_domain::AccountResource {
                account_id: r.get(0),
                kind: $crate::world::kind_from(r.get::<&str, _>(1)),
                resource_id: r.get(2),
                sort_key: r.get(3),
                body: $crate::auth::parse_json(r.get::<&str, _>(4))?,
            })
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use aspen_domain::CreditDebit;

    fn tx(at: i64, credit: bool) -> Transaction {
        Transaction {
            transaction_id: format!("t{at}"),
            account_id: "a".into(),
            booking_ms: at,
            value_ms: None,
            amount_minor: 1,
            currency: "GBP".into(),
            credit_debit: if credit {
                CreditDebit::Credit
            } else {
                CreditDebit::Debit
            },
            status: "Booked".into(),
            reference: None,
            information: None,
            balance_minor: None,
            detail: aspen_domain::TxDetail::from_text("{}".into()).unwrap(),
        }
    }

    /// A page read again (the direct lane busy part-way, then sqlx's
    /// path) answers for the second reading only, sink and edges alike;
    /// read backwards, its edges are the other way round.
    #[test]
    fn a_page_read_again_keeps_only_the_second_reading() {
        #[derive(Default)]
        struct Ids(Vec<String>);
        impl TxSink for Ids {
            fn entry(&mut self, t: &TransactionView<'_>) {
                self.0.push(t.transaction_id.to_string());
            }
            fn takes_stored(&self) -> bool {
                false
            }
            fn stored(&mut self, _: &aspen_domain::StoredTx<'_>) {
                unreachable!("stored forms are not asked for")
            }
            fn restart(&mut self) {
                self.0.clear();
            }
        }
        let txs: Vec<Transaction> = (1..=4).map(|i| tx(i * 10, true)).collect();
        for backwards in [false, true] {
            let mut ids = Ids::default();
            let mut page = PageRows::new(&mut ids, 2);
            txs.iter().for_each(|t| page.tx(&t.view()));
            page.summary(false, Some(9), None);
            page.restart();
            txs[1..3].iter().for_each(|t| page.tx(&t.view()));
            page.summary(true, Some(2), Some((10, 40)));
            let p = page.finish(backwards).unwrap().unwrap();
            assert_eq!(ids.0, ["t20", "t30"]);
            let at = |ms: i64| {
                Some(TxCursor {
                    booking_ms: ms,
                    transaction_id: format!("t{ms}"),
                })
            };
            let (first, last) = if backwards {
                (at(30), at(20))
            } else {
                (at(20), at(30))
            };
            assert_eq!((p.rows, p.first, p.last), (2, first, last));
            assert_eq!(
                (p.descending, p.count, p.bounds),
                (backwards, Some(2), Some((10, 40)))
            );
        }
        // No summary row read: an error, not an empty page.
        let mut ids = Ids::default();
        let mut page = PageRows::new(&mut ids, 2);
        page.summary(true, None, None);
        page.restart();
        assert!(page.finish(false).is_err());
    }

    /// A stored page reads the position of its first row and of the last
    /// row it can hold, no other; the position where the read ended is
    /// answered only for a full page, either way round, as for a page read
    /// from its columns.
    #[test]
    fn a_stored_page_reads_only_its_edges_positions() {
        struct Count(usize);
        impl TxSink for Count {
            fn entry(&mut self, _: &TransactionView<'_>) {
                self.0 += 1;
            }
            fn takes_stored(&self) -> bool {
                true
            }
            fn stored(&mut self, _: &aspen_domain::StoredTx<'_>) {
                self.0 += 1;
            }
            fn restart(&mut self) {
                self.0 = 0;
            }
        }
        let txs: Vec<Transaction> = (1..=5).map(|i| tx(i * 10, true)).collect();
        let forms: Vec<String> = txs
            .iter()
            .map(|t| aspen_domain::wire::stored(&t.view()).unwrap())
            .collect();
        let at = |ms: i64| TxCursor {
            booking_ms: ms,
            transaction_id: format!("t{ms}"),
        };
        for (limit, rows) in [(5, 5), (5, 3), (1, 1), (5, 1), (5, 0)] {
            for backwards in [false, true] {
                let mut sink = Count(0);
                let mut page = PageRows::new(&mut sink, limit);
                let mut read = vec![];
                for (t, form) in txs.iter().zip(&forms).take(rows) {
                    page.stored(Some(1), Some(form.as_bytes()), || {
                        read.push(t.booking_ms);
                        Ok((t.booking_ms, t.transaction_id.as_str()))
                    })
                    .unwrap();
                }
                // Read from the columns, the same rows give the same ends.
                let mut columns = Count(0);
                let mut by_columns = PageRows::new(&mut columns, limit);
                txs.iter().take(rows).for_each(|t| by_columns.tx(&t.view()));
                for p in [&mut page, &mut by_columns] {
                    p.summary(true, None, None);
                }
                let p = page.finish(backwards).unwrap().unwrap();
                let q = by_columns.finish(backwards).unwrap().unwrap();
                assert_eq!(p, q, "limit {limit}, {rows} rows");
                let mut want_read = vec![];
                if rows > 0 {
                    want_read.push(10);
                }
                if rows == limit && limit > 1 {
                    want_read.push(rows as i64 * 10);
                }
                assert_eq!(read, want_read, "limit {limit}, {rows} rows");
                let first = (rows > 0).then(|| at(10));
                let end = (rows == limit && rows > 0).then(|| at(rows as i64 * 10));
                let want = if backwards {
                    (end, first)
                } else {
                    (first, end)
                };
                assert_eq!((p.first, p.last), want, "limit {limit}, {rows} rows");
                assert_eq!((p.rows, sink.0), (rows, rows));
            }
        }
    }

    /// A page deep in a long history costs what the first page costs: the
    /// index is entered at the cursor, not at the window's start and
    /// walked from there; and the direct lane's statement, which leaves out
    /// what holds for every row, reads the same rows as the full one. Counted in SQLite's VM steps (not time), on the
    /// migrated schema with every index it has and no statistics (with
    /// `ANALYZE`'s, SQLite may choose the cursor's bound by itself; without
    /// them it chose the window's, and a page 4,000 entries deep took 6.5
    /// times the steps of one 400 deep).
    #[tokio::test]
    async fn a_deep_page_is_entered_at_its_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = crate::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let c = rusqlite::Connection::open(&path).unwrap();
        // Only the transactions table matters here: no account row for
        // them to refer to.
        c.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        let n = 5_000i64;
        let tx = c.unchecked_transaction().unwrap();
        for i in 0..n {
            tx.execute(
                "INSERT INTO transactions (transaction_id, account_id, booking_ms, amount_minor, \
                 currency, credit, status, detail) VALUES (?1, 'a', ?2, 1, 'GBP', ?3, 'Booked', '{}')",
                rusqlite::params![format!("t{i:05}"), i / 3, i % 2],
            )
            .unwrap();
        }
        tx.commit().unwrap();

        let at = |i: i64| TxCursor {
            booking_ms: i / 3,
            transaction_id: format!("t{i:05}"),
        };
        // As the lane binds `$n`: by name, the ones the text uses.
        fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[&dyn rusqlite::ToSql]) {
            for i in 1..=stmt.parameter_count() {
                let n: usize = stmt.parameter_name(i).unwrap()[1..].parse().unwrap();
                stmt.raw_bind_parameter(i, params[n - 1]).unwrap();
            }
        }
        // VM steps and rows of one page, as the direct lane reads it
        // (`lane`) or in the statement both backends share.
        let read = |f: &TxFilter,
                    after: Option<&TxCursor>,
                    before: Option<&TxCursor>,
                    lane: bool,
                    columns: &str| {
            let k = keyset(f, after, before);
            let sql = if lane {
                lane_page_sql(&k, f, 100, columns)
            } else {
                page_sql(&k, 100, "", columns, true)
            };
            let mut stmt = c.prepare(&sql).unwrap();
            let (credit, debit) = (
                if f.credits { 1i64 } else { -1 },
                if f.debits { 0i64 } else { -1 },
            );
            bind(
                &mut stmt,
                &[&"a", &f.from_ms, &f.to_ms, &credit, &debit, &k.ms, &k.id],
            );
            let mut rows = Vec::new();
            let mut it = stmt.raw_query();
            while let Some(r) = it.next().unwrap() {
                rows.push(r.get::<_, String>(0).unwrap());
            }
            drop(it);
            let steps = stmt.get_status(rusqlite::StatementStatus::VmStep);
            (steps, rows)
        };
        let page = |f: &TxFilter,
                    after: Option<&TxCursor>,
                    before: Option<&TxCursor>,
                    lane: bool| { read(f, after, before, lane, TX_COLUMNS) };
        let steps = |f: &TxFilter, after: Option<&TxCursor>, before: Option<&TxCursor>| {
            page(f, after, before, true)
        };
        // The lane's statement leaves out only what holds for every row: the
        // same rows as the full one, for every kind of window and position.
        let third = n / 3;
        for f in [
            (i64::MIN, i64::MAX),
            (10, i64::MAX),
            (i64::MIN, third - 10),
            (10, third - 10),
            (third - 40, third - 5),
            (third, i64::MAX),
            (i64::MIN, 0),
        ]
        .into_iter()
        .flat_map(|(from_ms, to_ms)| {
            [(true, true), (true, false), (false, true)].map(|(credits, debits)| TxFilter {
                from_ms,
                to_ms,
                credits,
                debits,
            })
        }) {
            for (after, before) in [
                (None, None),
                (Some(at(0)), None),
                (Some(at(30)), None),
                (Some(at(n - 50)), None),
                (None, Some(at(n - 1))),
                (None, Some(at(n - 200))),
                (None, Some(at(60))),
                (
                    None,
                    Some(TxCursor {
                        booking_ms: i64::MAX,
                        transaction_id: String::new(),
                    }),
                ),
                (
                    Some(TxCursor {
                        booking_ms: 20,
                        transaction_id: String::new(),
                    }),
                    None,
                ),
            ] {
                // A page of stored forms reads the page index alone.
                let k = keyset(&f, after.as_ref(), before.as_ref());
                let mut stmt = c
                    .prepare(&format!(
                        "EXPLAIN QUERY PLAN {}",
                        lane_page_sql(&k, &f, 100, STORED_COLUMNS)
                    ))
                    .unwrap();
                bind(
                    &mut stmt,
                    &[&"a", &f.from_ms, &f.to_ms, &1, &0, &k.ms, &k.id],
                );
                let mut plan = String::new();
                let mut it = stmt.raw_query();
                while let Some(r) = it.next().unwrap() {
                    plan.push_str(&r.get::<_, String>(3).unwrap());
                    plan.push_str("; ");
                }
                assert!(
                    plan.contains("USING COVERING INDEX transactions_page")
                        && !plan.contains("B-TREE"),
                    "{f:?} after {after:?} before {before:?}: {plan}"
                );
                let (_, lane_rows) = page(&f, after.as_ref(), before.as_ref(), true);
                let (_, full_rows) = page(&f, after.as_ref(), before.as_ref(), false);
                assert_eq!(
                    lane_rows, full_rows,
                    "{f:?} after {after:?} before {before:?}"
                );
            }
        }
        // A first page of an open window, as a page reads it: no test a row.
        let (lane, _) = read(&TxFilter::all(), None, None, true, STORED_COLUMNS);
        let (full, _) = read(&TxFilter::all(), None, None, false, STORED_COLUMNS);
        // 809 steps against 1,671 when written (with the table row read
        // too, before the page index: 910 against 1,772).
        assert!(
            lane * 5 < full * 3,
            "first page: {lane} steps against {full}"
        );
        for f in [
            TxFilter::all(),
            TxFilter {
                from_ms: 10,
                to_ms: n / 3 - 10,
                credits: true,
                debits: false,
            },
        ] {
            // Forward from near the start and from near the end; backward
            // from near the end and from near the start.
            let (near, rows) = steps(&f, Some(&at(400)), None);
            assert_eq!(rows.len(), 100);
            let (deep, rows) = steps(&f, Some(&at(n - 1_000)), None);
            assert_eq!(rows.len(), 100);
            assert!(
                deep < near + near / 4,
                "forward: near the start {near} steps, deep {deep}"
            );
            let (near, rows) = steps(&f, None, Some(&at(n - 400)));
            assert_eq!(rows.len(), 100);
            let (deep, rows) = steps(&f, None, Some(&at(1_000)));
            assert_eq!(rows.len(), 100);
            assert!(
                deep < near + near / 4,
                "backward: near the end {near} steps, deep {deep}"
            );
        }
    }

    /// PostgreSQL's generic plan (the one a prepared statement settles on)
    /// for every kind of page walks the keyset index from its position,
    /// with no sort: given SQLite's `+booking_ms`, it took the count index
    /// and sorted the account's whole history.
    #[tokio::test]
    async fn postgres_plans_every_page_on_the_keyset_index() {
        use sqlx::{Connection, Executor};
        let url = std::env::var("ASPEN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut c = match sqlx::PgConnection::connect(&url).await {
            Ok(c) => c,
            Err(e) if std::env::var("ASPEN_REQUIRE_POSTGRES").as_deref() != Ok("1") => {
                eprintln!("SKIPPED: PostgreSQL not reachable at {url}: {e}");
                return;
            }
            Err(e) => panic!("PostgreSQL required but not reachable at {url}: {e}"),
        };
        let schema = format!("t_plan_{}", std::process::id());
        c.execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        )))
        .await
        .unwrap();
        let store = crate::connect_with_schema(&url, Some(&schema))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        // The history alone, with no account rows behind it.
        c.execute(sqlx::AssertSqlSafe(format!(
            "SET search_path = {schema}; \
             ALTER TABLE transactions DROP CONSTRAINT transactions_account_id_fkey; \
             INSERT INTO transactions (transaction_id, account_id, booking_ms, amount_minor, \
               currency, credit, status, detail) SELECT 't' || lpad(i::text, 5, '0'), 'a', i / 3, \
               1, 'GBP', i % 2, 'Booked', '{{}}' FROM generate_series(0, 9999) AS i; \
             ANALYZE transactions; SET plan_cache_mode = force_generic_plan"
        )))
        .await
        .unwrap();
        let at = |ms: i64| TxCursor {
            booking_ms: ms,
            transaction_id: format!("t{:05}", ms.saturating_mul(3)),
        };
        let window = TxFilter {
            from_ms: 100,
            to_ms: 3_000,
            credits: true,
            debits: false,
        };
        let mut n = 0;
        for f in [TxFilter::all(), window] {
            for (after, before) in [
                (None, None),
                (Some(at(2_000)), None),
                (None, Some(at(i64::MAX))),
                (None, Some(at(1_000))),
            ] {
                let k = keyset(&f, after.as_ref(), before.as_ref());
                let counts = count_params(&f);
                for (sql, summary) in [
                    (page_sql(&k, 100, "", TX_COLUMNS, false), false),
                    (page_summary_sql(&k, 100, Some(&counts), false, false), true),
                ] {
                    n += 1;
                    let types = if summary {
                        "text, bigint, bigint, bigint, bigint, bigint, text, \
                         bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint"
                    } else {
                        "text, bigint, bigint, bigint, bigint, bigint, text"
                    };
                    let mut args = format!(
                        "'a', {}, {}, 1, -1, {}, '{}'",
                        f.from_ms, f.to_ms, k.ms, k.id
                    );
                    if summary {
                        for p in counts {
                            args.push_str(&format!(", {p}"));
                        }
                    }
                    c.execute(sqlx::AssertSqlSafe(format!(
                        "PREPARE p{n} ({types}) AS {sql}"
                    )))
                    .await
                    .unwrap();
                    let plan: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "EXPLAIN EXECUTE p{n} ({args})"
                    )))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                    let plan: String = plan.into_iter().map(|(line,)| line + "\n").collect();
                    assert!(
                        plan.contains("using transactions_keyset") && !plan.contains("Sort"),
                        "{sql}\n{plan}"
                    );
                }
            }
        }
        c.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .await
            .unwrap();
    }

    /// The plan's parts, summed over the day and block counts as the
    /// summary statement sums them, give exactly the rows in the window,
    /// whatever the window's ends (open, on a block's or a day's first
    /// millisecond, or inside a day).
    #[test]
    fn a_count_plan_covers_its_window_exactly_once() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let start = 20_000 * DAY_MS;
        let span = 400 * DAY_MS;
        let txs: Vec<Transaction> = (0..3_000)
            .map(|_| tx(start + (next() % span as u64) as i64, next() % 3 == 0))
            .collect();
        let (days, blocks) = day_and_block_counts(&txs);
        let sum = |m: &Counts, (from, to): (i64, i64), f: &TxFilter| -> i64 {
            m.iter()
                .filter(|((_, at, credit), _)| {
                    *at >= from
                        && *at < to
                        && ((*credit == 1 && f.credits) || (*credit == 0 && f.debits))
                })
                .map(|(_, n)| n)
                .sum()
        };
        let mut ends = vec![i64::MIN, i64::MAX, start, start + span];
        for _ in 0..60 {
            let at = start - 40 * DAY_MS + (next() % (span as u64 + 80 * DAY_MS as u64)) as i64;
            ends.extend([
                at,
                at.div_euclid(DAY_MS) * DAY_MS,
                block_of(at.div_euclid(DAY_MS)) * BLOCK_DAYS * DAY_MS,
            ]);
        }
        let mut checked = 0;
        for &from_ms in &ends {
            for &to_ms in &ends {
                for (credits, debits) in [(true, true), (true, false), (false, true)] {
                    let f = TxFilter {
                        from_ms,
                        to_ms,
                        credits,
                        debits,
                    };
                    let plan = count_plan(&f);
                    assert!(plan.days.len() <= 2 && plan.edges.len() <= 2, "{plan:?}");
                    // Day rows only for partial blocks.
                    let most = if plan.blocks.is_some() {
                        BLOCK_DAYS
                    } else {
                        2 * BLOCK_DAYS
                    };
                    assert!(plan.days.iter().all(|&(a, b)| b - a < most), "{plan:?}");
                    let mut n = plan.blocks.map_or(0, |b| sum(&blocks, b, &f));
                    n += plan.days.iter().map(|&d| sum(&days, d, &f)).sum::<i64>();
                    n += plan
                        .edges
                        .iter()
                        .map(|&(a, b)| {
                            txs.iter()
                                .filter(|t| t.booking_ms >= a && t.booking_ms < b)
                                .filter(|t| {
                                    (t.credit_debit == CreditDebit::Credit && credits)
                                        || (t.credit_debit == CreditDebit::Debit && debits)
                                })
                                .count() as i64
                        })
                        .sum::<i64>();
                    let want = txs
                        .iter()
                        .filter(|t| t.booking_ms >= from_ms && t.booking_ms < to_ms)
                        .filter(|t| {
                            (t.credit_debit == CreditDebit::Credit && credits)
                                || (t.credit_debit == CreditDebit::Debit && debits)
                        })
                        .count() as i64;
                    assert_eq!(n, want, "{f:?} planned as {plan:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000);
    }

    /// The summary's count reads exactly the parts its window's plan
    /// names: none of the others' subqueries is in the statement (the
    /// store suite checks the totals on both backends).
    #[test]
    fn a_summary_reads_only_the_parts_its_window_needs() {
        let day = |d: i64| d * DAY_MS;
        let windows = [
            (i64::MIN, i64::MAX, (true, 0, 0)),
            (day(20_000) + 5, day(20_000) + 9, (false, 0, 1)),
            (day(20_000) + 5, day(20_400) - 5, (true, 2, 2)),
            (day(20_001), day(20_003), (false, 1, 0)),
            (day(20_001), i64::MAX, (true, 1, 0)),
        ];
        for (from_ms, to_ms, (blocks, days, edges)) in windows {
            let f = TxFilter {
                from_ms,
                to_ms,
                credits: true,
                debits: false,
            };
            let plan = count_plan(&f);
            assert_eq!(
                (plan.blocks.is_some(), plan.days.len(), plan.edges.len()),
                (blocks, days, edges),
                "{f:?}"
            );
            let sql = summary_sql(Some(&count_params(&f)));
            assert_eq!(
                sql.matches("FROM tx_blocks").count(),
                usize::from(blocks),
                "{sql}"
            );
            assert_eq!(sql.matches("FROM tx_days").count(), days, "{sql}");
            // The edges' counts, besides the two probes for the period.
            assert_eq!(
                sql.matches("COUNT(*) FROM transactions").count(),
                edges,
                "{sql}"
            );
            assert_eq!(sql.matches("FROM transactions").count(), edges + 2, "{sql}");
        }
        let bare = summary_sql(None);
        assert!(
            !bare.contains("FROM transactions") && !bare.contains("FROM tx_"),
            "{bare}"
        );
    }

    #[test]
    fn the_column_count_is_the_columns() {
        assert_eq!(TX_COLUMNS.split(',').count(), TX_COLUMN_COUNT);
        assert_eq!(TX_INSERT_COLUMNS.split(',').count(), TX_INSERT_COLUMN_COUNT);
        assert_eq!(STORED_COLUMNS.split(',').count(), STORED_COLUMN_COUNT);
        assert!(TX_INSERT_COLUMNS.starts_with(TX_COLUMNS));
    }

    #[test]
    fn a_long_window_reads_blocks_not_days() {
        let plan = count_plan(&TxFilter {
            from_ms: 20_000 * DAY_MS + 5,
            to_ms: 20_400 * DAY_MS - 5,
            credits: true,
            debits: true,
        });
        // Days 20,001..20,399: blocks 626..637 whole (20,032..20,384), the
        // days either side of them, and the two partial days.
        assert_eq!(
            plan,
            CountPlan {
                blocks: Some((626, 637)),
                days: vec![(20_001, 20_032), (20_384, 20_399)],
                edges: vec![
                    (20_000 * DAY_MS + 5, 20_001 * DAY_MS),
                    (20_399 * DAY_MS, 20_400 * DAY_MS - 5)
                ],
            }
        );
        let open = count_plan(&TxFilter::all());
        assert_eq!(open.blocks, Some((i64::MIN, i64::MAX)));
        assert!(open.days.is_empty() && open.edges.is_empty());
    }
}
