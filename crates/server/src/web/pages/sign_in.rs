//! Signing in and out.

use super::*;

pub async fn login_page(State(state): State<AppState>) -> Html<String> {
    login_form(&state, None).await
}

pub(super) async fn login_form(state: &AppState, problem: Option<&str>) -> Html<String> {
    let configured = matches!(admin::admin_token_hash(&state.app).await, Ok(Some(_)));
    page(
        "Sign in",
        None,
        None,
        html! {
            h1 { "Sign in" }
            @if !configured {
                div.empty {
                    p { "No admin token exists yet. Create one on the server:" }
                    pre { "callgrade admin token" }
                }
            }
            @if let Some(p) = problem { p.bad { (p) } }
            form.card method="post" action="/login" {
                label { "Admin token " input type="password" name="token" autocomplete="current-password" autofocus; }
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    if admin::admin_token_matches(&state.app, &form.token).await {
        if let Some(cookie) = new_session_cookie(&state).await {
            let mut response = see_other("/");
            response.headers_mut().insert(SET_COOKIE, cookie);
            return response;
        }
    }
    (
        StatusCode::UNAUTHORIZED,
        login_form(&state, Some("That is not the admin token.")).await,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(rename = "_csrf")]
    pub(super) csrf: String,
}

pub async fn logout(admin: Admin, Form(form): Form<CsrfForm>) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let mut response = see_other("/login");
    response.headers_mut().insert(SET_COOKIE, cleared_cookie());
    Ok(response)
}
