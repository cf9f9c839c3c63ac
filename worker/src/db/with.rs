//! Several writes as one statement on PostgreSQL: a `WITH` whose first query is a
//! write (`INSERT`/`UPDATE … RETURNING`) read by the rest. One statement is atomic
//! by itself, so it needs no transaction: one round trip where `BEGIN`, the
//! statements and `COMMIT` would take one each.

use sea_orm::{DbBackend, Statement, StatementBuilder, Value};

/// `WITH {name} AS ({first}) {rest}` for PostgreSQL. `rest` names its own values
/// `$V1`, `$V2`, … in the order of `values`; they are numbered here after
/// `first`'s.
pub fn with_first(
    name: &str,
    first: &impl StatementBuilder,
    rest: &str,
    values: Vec<Value>,
) -> Statement {
    let first = DbBackend::Postgres.build(first);
    let mut all = first.values.map(|v| v.0).unwrap_or_default();
    let base = all.len();
    let mut rest = rest.to_owned();
    // From the last, so that `$V1` never rewrites the start of a `$V10`.
    for i in (1..=values.len()).rev() {
        rest = rest.replace(&format!("$V{i}"), &format!("${}", base + i));
    }
    all.extend(values);
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("WITH {name} AS ({}) {rest}", first.sql),
        all,
    )
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{Expr, ExprTrait, Query};

    use super::*;

    #[test]
    fn the_rest_is_numbered_after_the_first_query() {
        let first = Query::update()
            .table("t")
            .value("a", 1)
            .and_where(Expr::col("b").eq(2))
            .returning_all()
            .to_owned();
        let values: Vec<Value> = (10..21).map(Value::from).collect();
        let statement = with_first("w", &first, "SELECT $V1, $V2, $V10, $V11 FROM w", values);
        assert_eq!(
            statement.sql,
            r#"WITH w AS (UPDATE "t" SET "a" = $1 WHERE "b" = $2 RETURNING *) SELECT $3, $4, $12, $13 FROM w"#
        );
        let values = statement.values.unwrap().0;
        assert_eq!(values.len(), 13);
        assert_eq!(values[2], Value::from(10));
        assert_eq!(values[12], Value::from(20));
    }
}
