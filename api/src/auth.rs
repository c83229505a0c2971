//! Who is calling, as handler parameters: [`Session`] (a verified Clerk session), [`SessionToken`]
//! (the same, verified later by the handler) and [`Operator`] (`ADMIN_TOKEN` or an admin's
//! session, with the cross-site check for cookie-authenticated writes). Each is a poem-openapi
//! security scheme, so `/docs` offers Authorize and the spec says which routes need what.
//! A refusal is an [`ApiError`] (401, 403, or 503 when verification is not configured).

use crate::error::{ApiError, Code};
use crate::session::SessionVerifier;
use crate::startup::AppState;
use jobs::clerk::ids::ClerkUserId;
use poem::http::HeaderMap;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use secrecy::ExposeSecret;

/// Security scheme names in the spec.
const ADMIN_TOKEN: &str = "AdminToken";
const SESSION_BEARER: &str = "SessionToken";
const SESSION_COOKIE: &str = "SessionCookie";

fn register_schemes(registry: &mut Registry) {
    let bearer = |description| MetaSecurityScheme {
        ty: "http",
        description: Some(description),
        name: None,
        key_in: None,
        scheme: Some("bearer"),
        bearer_format: None,
        flows: None,
        openid_connect_url: None,
    };
    registry.create_security_scheme(
        ADMIN_TOKEN,
        bearer("`ADMIN_TOKEN`, for the operator routes."),
    );
    registry.create_security_scheme(
        SESSION_BEARER,
        MetaSecurityScheme {
            bearer_format: Some("JWT"),
            ..bearer(
                "A Clerk session token (RS256 JWT). Operator routes accept the session of a user \
                 whose role is `admin`.",
            )
        },
    );
    registry.create_security_scheme(
        SESSION_COOKIE,
        MetaSecurityScheme {
            ty: "apiKey",
            description: Some(
                "Clerk's `__session` cookie, used when no `Authorization` header is sent. \
                 State-changing operator requests signed in by it must come from this \
                 service's own pages (`Sec-Fetch-Site` or `Origin`).",
            ),
            name: Some("__session"),
            key_in: Some("cookie"),
            scheme: None,
            bearer_format: None,
            flows: None,
            openid_connect_url: None,
        },
    );
}

fn state(req: &Request) -> poem::Result<&AppState> {
    req.data::<AppState>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the app state is not attached")).into())
}

/// The session verifier, or 503 `not_configured` without `CLERK_JWKS_URL`/`CLERK_ISSUER`.
fn verifier(state: &AppState) -> Result<&SessionVerifier, ApiError> {
    state.sessions.as_deref().ok_or(ApiError::NotConfigured(
        "session verification (CLERK_JWKS_URL, CLERK_ISSUER)",
    ))
}

/// Implements [`ApiExtractor`] as a security scheme accepting `$schemes`, built by `$extract`.
macro_rules! security_extractor {
    ($ty:ty, [$($scheme:expr),*], $extract:expr) => {
        impl<'a> ApiExtractor<'a> for $ty {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                register_schemes(registry);
            }

            fn security_schemes() -> Vec<&'static str> {
                vec![$($scheme),*]
            }

            async fn from_request(
                req: &'a Request,
                _body: &mut RequestBody,
                _opts: ExtractParamOptions<()>,
            ) -> poem::Result<Self> {
                let state = state(req)?;
                Ok($extract(req, state).await?)
            }
        }
    };
}

/// A verified Clerk session: the signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: ClerkUserId,
}

async fn session(req: &Request, state: &AppState) -> Result<Session, ApiError> {
    let s = verifier(state)?.verify_request(req.headers()).await?;
    Ok(Session { user_id: s.user_id })
}

security_extractor!(Session, [SESSION_BEARER, SESSION_COOKIE], session);

/// The caller's session token, not verified yet: for a route that must refuse some requests
/// before it spends a signature check on them (the long-poll's checks and admission limits),
/// so extracting it never fails; [`SessionToken::configured`] and [`SessionToken::verify`]
/// refuse as [`Session`] would, when the route is ready for that.
pub struct SessionToken {
    /// The token from `Authorization: Bearer` or the `__session` cookie.
    pub token: Option<String>,
    headers: HeaderMap,
    verifier: Option<std::sync::Arc<SessionVerifier>>,
}

impl SessionToken {
    /// 503 `not_configured` without session verification.
    pub fn configured(&self) -> Result<&SessionVerifier, ApiError> {
        self.verifier.as_deref().ok_or(ApiError::NotConfigured(
            "session verification (CLERK_JWKS_URL, CLERK_ISSUER)",
        ))
    }

    pub async fn verify(&self) -> Result<Session, ApiError> {
        let s = self.configured()?.verify_request(&self.headers).await?;
        Ok(Session { user_id: s.user_id })
    }
}

async fn session_token(req: &Request, state: &AppState) -> Result<SessionToken, ApiError> {
    Ok(SessionToken {
        token: SessionVerifier::token(req.headers()),
        headers: req.headers().clone(),
        verifier: state.sessions.clone(),
    })
}

security_extractor!(
    SessionToken,
    [SESSION_BEARER, SESSION_COOKIE],
    session_token
);

/// An operator: `ADMIN_TOKEN` (constant-time compare) or the session of a user whose role is
/// `admin`. 401 without credentials, 403 `forbidden` for other users. A state-changing request
/// (any method but GET/HEAD/OPTIONS) signed in by the `__session` cookie must come from this
/// service's own pages, or it is 403 `cross_site_request` (see `routes::csrf`).
#[derive(Debug, Clone)]
pub struct Operator {
    /// `admin-token`, or `user:<clerk user id>`: the actor in audit entries.
    pub who: String,
}

impl Operator {
    /// The audit origin of the operator's request: the admin user, or `system` for ADMIN_TOKEN.
    pub fn origin(&self) -> jobs::audit::Origin {
        jobs::audit::Origin {
            user: self
                .who
                .strip_prefix("user:")
                .and_then(|id| ClerkUserId::parse(id).ok()),
            ..jobs::audit::Origin::system()
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn operator(req: &Request, state: &AppState) -> Result<Operator, ApiError> {
    let headers = req.headers();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if let (Some(token), Some(admin)) = (bearer, &state.admin_token) {
        if constant_time_eq(token.as_bytes(), admin.expose_secret().as_bytes()) {
            return Ok(Operator {
                who: "admin-token".into(),
            });
        }
    }
    // Without an Authorization header the session comes from the cookie, which a browser
    // also attaches to requests other sites make.
    let by_cookie =
        headers.get("authorization").is_none() && SessionVerifier::token(headers).is_some();
    let write = !req.method().is_safe();
    if write && by_cookie && !crate::routes::csrf::from_own_origin(headers) {
        return Err(ApiError::CrossSiteRequest);
    }
    let Some(sessions) = &state.sessions else {
        return Err(ApiError::Unauthenticated(
            Code::InvalidToken,
            "operator routes need ADMIN_TOKEN or an admin session",
        ));
    };
    let session = sessions.verify_request(headers).await?;
    let user = jobs::store::users::live_id_and_role(&state.pool, &session.user_id)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    match user.as_ref().map(|u| u.role.as_str()) {
        Some("admin") => Ok(Operator {
            who: format!("user:{}", session.user_id),
        }),
        _ => Err(ApiError::Forbidden("operator routes are for admins")),
    }
}

security_extractor!(
    Operator,
    [ADMIN_TOKEN, SESSION_BEARER, SESSION_COOKIE],
    operator
);
