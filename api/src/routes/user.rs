//! A provisioned user as `/v1/sync`, `/v1/jobs/{id}` and `/v1/me` show it.

use jobs::store::users::UserView;
use poem_openapi::Object;

// The fields of `jobs::users::UserView` as a poem-openapi `Object` (the `jobs` crate knows
// nothing of HTTP), so the spec is built from what is sent.
/// A provisioned user.
#[derive(Object)]
pub struct User {
    /// Our primary key (UUID).
    id: String,
    clerk_user_id: Option<String>,
    email: Option<String>,
    email_verified: bool,
    first_name: Option<String>,
    last_name: Option<String>,
    username: Option<String>,
    image_url: Option<String>,
    /// `user` or `admin`.
    role: String,
}

impl From<UserView> for User {
    fn from(u: UserView) -> Self {
        Self {
            id: u.id.to_string(),
            clerk_user_id: u.clerk_user_id,
            email: u.email,
            email_verified: u.email_verified,
            first_name: u.first_name,
            last_name: u.last_name,
            username: u.username,
            image_url: u.image_url,
            role: u.role,
        }
    }
}
