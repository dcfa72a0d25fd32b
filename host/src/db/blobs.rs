//! Content-addressed bytes kept in the database, so that every node sharing
//! it can compile a component or load a model another node received.

use sqlx::Row;

use super::Db;

/// What kind of bytes, which is also their table.
#[derive(Debug, Clone, Copy)]
pub enum Blob {
    /// A component's `.wasm`.
    Component,
    /// A model's ONNX bytes.
    Model,
}

impl Blob {
    fn table(self) -> &'static str {
        match self {
            Self::Component => "components",
            Self::Model => "model_blobs",
        }
    }
}

impl Db {
    /// Stores bytes once per digest.
    pub async fn put_blob(&self, kind: Blob, digest: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let sql =
            format!("INSERT INTO {} (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING", kind.table());
        sqlx::query(&sql).bind(digest).bind(bytes.to_vec()).execute(&self.pool).await?;
        Ok(())
    }

    /// Stored bytes by digest.
    pub async fn blob(&self, kind: Blob, digest: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let sql = format!("SELECT bytes FROM {} WHERE digest = $1", kind.table());
        let row = sqlx::query(&sql).bind(digest).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("bytes")).transpose()?)
    }

    /// How many components the database keeps, and their bytes in all.
    pub async fn component_blobs(&self) -> anyhow::Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(LENGTH(bytes)), 0) AS BIGINT) AS b FROM components",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("b")?))
    }
}
