//! The console's lists: 50 a page, and a search. Without a search a page
//! reads its 50 records and an indexed count; a search lets the database
//! keep the records holding the text, then the page keeps those whose
//! shown fields hold it.

use serde::Deserialize;
use vpcip_store::{Resource, Scope};

use crate::App;
use crate::error::ApiError;

/// Rows on one page of a list.
pub(crate) const PER_PAGE: usize = 50;
const PER_PAGE_U32: u32 = 50;

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub page: usize,
    /// The store's token of the page before (the "next" link carries it:
    /// going forward reads one page, not every page before it).
    #[serde(default)]
    pub after: Option<String>,
}

/// A list's search box and page links, as `pager.html` draws them.
pub(crate) struct Pager {
    /// The list's path (`/ui/servers`).
    pub base: &'static str,
    /// What the search box matches, said in its placeholder.
    pub hint: &'static str,
    /// What the list holds (`server(s)`).
    pub noun: &'static str,
    pub q: String,
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    /// The store's token of the page after this one (no search).
    pub next: Option<String>,
}

/// One page of the `R` `scope` sees: those whose shown fields hold the
/// search (`shown(r, needle)`, the needle lower-cased) when there is one.
pub(crate) async fn page<R: Resource>(
    app: &App,
    scope: &Scope,
    q: &ListQuery,
    (base, hint, noun): (&'static str, &'static str, &'static str),
    shown: impl Fn(&R, &str) -> bool,
) -> Result<(Vec<R>, Pager), ApiError> {
    let needle = q.q.trim().to_lowercase();
    let (items, total, page, next) = if needle.is_empty() {
        unsearched(app, scope, q).await?
    } else {
        let found: Vec<R> = app
            .store
            .search::<R>(scope, q.q.trim())
            .await?
            .into_iter()
            .filter(|r| shown(r, &needle))
            .collect();
        let total = found.len();
        let page = q.page.min(total.div_ceil(PER_PAGE).max(1) - 1);
        let items = found
            .into_iter()
            .skip(page * PER_PAGE)
            .take(PER_PAGE)
            .collect();
        (items, total, page, None)
    };
    Ok((
        items,
        Pager {
            base,
            hint,
            noun,
            q: q.q.clone(),
            page,
            pages: total.div_ceil(PER_PAGE).max(1),
            total,
            next,
        },
    ))
}

/// A page without a search: the count, then the page after the token the
/// link carried, or the store's pages of `PER_PAGE` followed to page
/// `q.page` (a link typed by hand; the first page reads 50 records, not
/// every one).
async fn unsearched<R: Resource>(
    app: &App,
    scope: &Scope,
    q: &ListQuery,
) -> Result<(Vec<R>, usize, usize, Option<String>), ApiError> {
    let total = app.store.count::<R>(scope).await?;
    let page = q.page.min(total.div_ceil(PER_PAGE).max(1) - 1);
    if let Some(after) = q.after.as_deref().filter(|_| q.page > 0) {
        let got = app
            .store
            .list::<R>(scope, None, Some(after), Some(PER_PAGE_U32))
            .await?;
        return Ok((got.items, total, q.page, got.next_page_token));
    }
    let mut token: Option<String> = None;
    for at in 0..=page {
        let got = app
            .store
            .list::<R>(scope, None, token.as_deref(), Some(PER_PAGE_U32))
            .await?;
        if at == page {
            return Ok((got.items, total, page, got.next_page_token));
        }
        match got.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok((vec![], total, page, None))
}

/// Whether any of `fields` holds `needle` (lower-cased), case aside.
pub(crate) fn holds(fields: &[&str], needle: &str) -> bool {
    fields.iter().any(|f| f.to_lowercase().contains(needle))
}
