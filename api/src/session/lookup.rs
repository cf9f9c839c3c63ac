//! Finding the session a request presents: Redis's copy when the instances share
//! one (`redis_url`) and it holds the session, else the database, whose answer then
//! fills the cache. The user always comes from the database.

use chrono::Utc;
use entity::{
    session::{self, Entity as Session},
    user_profile::{self, Entity as UserProfile},
};
use poem::web::cookie::CookieJar;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;
use worker::crypto;

use super::{
    Credential, CurrentUser, KIND_BROWSER, browser_lifetime, max_lifetime, set_session_cookie,
};
use crate::{
    shared::sessions::{CachedSession, Lookup},
    state::AppState,
};

/// `last_seen_at` is written at most this often, to keep reads cheap.
const TOUCH_INTERVAL: chrono::Duration = chrono::Duration::minutes(5);

pub(super) async fn find_current_user(
    state: &AppState,
    credential: &Credential,
    jar: &CookieJar,
) -> Result<Option<CurrentUser>, DbErr> {
    let now = Utc::now();
    let token_hash;
    let (lookup, subject) = match credential {
        Credential::Bearer(token) => {
            let Some(claims) = state.tokens.verify(token) else {
                return Ok(None);
            };
            (Lookup::Bearer(claims.sid), Some(claims.sub))
        }
        Credential::Cookie(token) => {
            token_hash = crypto::sha256_hex(token);
            (Lookup::Cookie(&token_hash), None)
        }
    };
    let Some((session, user)) = find(state, lookup, subject, now).await? else {
        return Ok(None);
    };
    if now - session.created_at > max_lifetime(state) {
        return Ok(None);
    }
    if now - session.last_seen_at > TOUCH_INTERVAL {
        let touched = touch(state, session.clone()).await?;
        if let Some(cache) = &state.session_cache {
            cache.put(lookup, &touched).await;
        }
        // The row's expiry slid forward: so does the cookie's, or an active user
        // would be signed out `session_lifetime` after signing in anyway.
        if let Credential::Cookie(token) = credential {
            set_session_cookie(state, jar, token);
        }
    }
    Ok(Some(CurrentUser {
        user,
        session_id: session.id,
        signed_in_at: session.created_at,
    }))
}

/// The session of `lookup` live at `now` (a bearer's must belong to `subject`) and
/// its user.
async fn find(
    state: &AppState,
    lookup: Lookup<'_>,
    subject: Option<Uuid>,
    now: chrono::DateTime<Utc>,
) -> Result<Option<(CachedSession, user_profile::Model)>, DbErr> {
    let fits = |session: &CachedSession| {
        session.expires_at > now
            && match lookup {
                Lookup::Bearer(_) => Some(session.user_id) == subject,
                Lookup::Cookie(_) => session.kind == KIND_BROWSER,
            }
    };
    if let Some(cache) = &state.session_cache
        && let Some(session) = cache.get(lookup).await.filter(fits)
    {
        let user = UserProfile::find_by_id(session.user_id)
            .one(&state.reader)
            .await?;
        return Ok(user.map(|user| (session, user)));
    }
    let query = Session::find()
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(now));
    let query = match lookup {
        Lookup::Bearer(id) => query
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::UserId.eq(subject)),
        Lookup::Cookie(token_hash) => query
            .filter(session::Column::TokenHash.eq(token_hash))
            .filter(session::Column::Kind.eq(KIND_BROWSER)),
    };
    let Some((row, Some(user))) = query
        .find_also_related(UserProfile)
        .one(&state.reader)
        .await?
    else {
        return Ok(None);
    };
    let session = CachedSession::from(&row);
    if let Some(cache) = &state.session_cache {
        cache.put(lookup, &session).await;
    }
    Ok(Some((session, user)))
}

/// Records use; browser sessions also slide their expiry forward.
async fn touch(state: &AppState, mut session: CachedSession) -> Result<CachedSession, DbErr> {
    let now = Utc::now();
    session.last_seen_at = now;
    let mut update = Session::update_many().col_expr(session::Column::LastSeenAt, Expr::value(now));
    if session.kind == KIND_BROWSER {
        session.expires_at = now + browser_lifetime(state);
        update = update.col_expr(session::Column::ExpiresAt, Expr::value(session.expires_at));
    }
    update
        .filter(session::Column::Id.eq(session.id))
        .exec(&state.db)
        .await?;
    Ok(session)
}
