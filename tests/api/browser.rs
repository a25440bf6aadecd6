//! A real browser for the console's tests: Debian's headless Chromium driven over WebDriver
//! (chromedriver, started per test on a free port), and an identity provider the browser can
//! visit, which answers every sign-in request with a signed response for one person.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::saml_idp::{Login, Signed, TestIdp};

/// Where the browser tests leave screenshots when `IDGATE_SCREENSHOTS` names a folder.
pub const SCREENSHOTS_ENV: &str = "IDGATE_SCREENSHOTS";

/// chromedriver, stopped when dropped, and a browser session on it.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Drop for Browser {
    /// Stops chromedriver and the Chromium it started: both are in a process group of their own.
    /// (Killing chromedriver alone left each test's Chromium running: 90 processes after the
    /// console tests, busy enough to disturb a benchmark run after them.)
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (installed by `scripts/install-deps --tests`).
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs: scripts/install-deps --tests installs chromium-driver");
        let url = format!("http://127.0.0.1:{port}");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--lang=en-US"]
            }
        });
        let capabilities = capabilities.as_object().expect("an object").clone();
        // chromedriver listens a moment after it starts: connecting is retried until it does.
        let mut attempts = 0;
        let client = loop {
            match ClientBuilder::native()
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) if attempts < 100 => {
                    attempts += 1;
                    let _ = error;
                    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("no WebDriver session: {error}"),
            }
        };
        Browser { client, driver }
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// The page's visible text (read again when a page that was loading replaced the one read).
    pub async fn text(&self) -> String {
        for _ in 0..100 {
            if let Ok(body) = self.client.find(Locator::Css("body")).await
                && let Ok(text) = body.text().await
            {
                return text;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the page has no readable body");
    }

    pub async fn heading(&self) -> String {
        self.client
            .find(Locator::Css("h1"))
            .await
            .expect("a heading")
            .text()
            .await
            .expect("its text")
    }

    /// Clicks the link or button whose text is `label`.
    pub async fn click(&self, label: &str) {
        let xpath = format!(
            "//a[normalize-space()='{label}'] | //button[normalize-space()='{label}'] | //input[@type='submit' and @value='{label}']"
        );
        self.client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|_| panic!("no link or button {label:?}"))
            .click()
            .await
            .expect("it can be clicked");
    }

    /// Types into the field labelled `label` (its `<label for>`), replacing what it held.
    pub async fn fill(&self, label: &str, value: &str) {
        let xpath = format!("//label[normalize-space()='{label}']");
        let label_element = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|_| panic!("no label {label:?}"));
        let id = label_element
            .attr("for")
            .await
            .expect("an attribute")
            .unwrap_or_else(|| panic!("label {label:?} names no field"));
        let field = self
            .client
            .find(Locator::Id(&id))
            .await
            .expect("the labelled field");
        field.clear().await.expect("it clears");
        field.send_keys(value).await.expect("it takes keys");
    }

    /// Selects `value` in the select labelled `label`.
    pub async fn select(&self, label: &str, value: &str) {
        let xpath = format!("//label[normalize-space()='{label}']");
        let id = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|_| panic!("no label {label:?}"))
            .attr("for")
            .await
            .expect("an attribute")
            .expect("a for");
        self.client
            .find(Locator::Id(&id))
            .await
            .expect("the select")
            .select_by_value(value)
            .await
            .expect("the option");
    }

    /// The text of the element with this id.
    pub async fn text_of(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|_| panic!("no element #{id}"))
            .text()
            .await
            .expect("its text")
    }

    /// Waits until the page's text contains `wanted` (a page loads after a click), or fails
    /// saying what the page showed.
    pub async fn wait_for_text(&self, wanted: &str) -> String {
        for _ in 0..200 {
            let text = self.text().await;
            if text.contains(wanted) {
                return text;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the page never showed {wanted:?}; it shows:\n{}",
            self.text().await
        );
    }

    /// Saves a screenshot of the window as `{name}.png` in the folder `IDGATE_SCREENSHOTS`
    /// names, if it does.
    pub async fn screenshot(&self, name: &str) {
        if std::env::var_os(SCREENSHOTS_ENV).is_some() {
            let png = self.client.screenshot().await.expect("a screenshot");
            save_screenshot(name, &png);
        }
    }

    /// As [`Browser::screenshot`], of the element with this id alone.
    pub async fn screenshot_of(&self, name: &str, id: &str) {
        if std::env::var_os(SCREENSHOTS_ENV).is_some() {
            let element = self
                .client
                .find(Locator::Id(id))
                .await
                .expect("the element");
            let png = element.screenshot().await.expect("a screenshot");
            save_screenshot(name, &png);
        }
    }
}

fn save_screenshot(name: &str, png: &[u8]) {
    let folder = std::env::var(SCREENSHOTS_ENV).expect("checked by the caller");
    std::fs::create_dir_all(&folder).expect("the screenshot folder");
    std::fs::write(format!("{folder}/{name}.png"), png).expect("the screenshot is written");
}

/// An IdP on a local port: `/metadata` describes it; `/sso` answers an AuthnRequest (Redirect
/// binding) with a page whose button posts a signed response for `email` to the ACS.
pub struct IdpServer {
    pub url: String,
    pub idp: Arc<TestIdp>,
}

struct IdpState {
    idp: Arc<TestIdp>,
    url: String,
    sp_base: String,
    slug: String,
    email: String,
    groups: Vec<String>,
}

impl IdpServer {
    pub async fn start(sp_base: &str, slug: &str, email: &str, groups: &[&str]) -> IdpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the IdP");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let idp = Arc::new(TestIdp::new(&format!("{url}/entity")));
        let state = web::Data::new(IdpState {
            idp: idp.clone(),
            url: url.clone(),
            sp_base: sp_base.to_owned(),
            slug: slug.to_owned(),
            email: email.to_owned(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/metadata", web::get().to(metadata))
                .route("/sso", web::get().to(sign_in))
        })
        .workers(1)
        .listen(listener)
        .expect("the IdP listens")
        .run();
        actix_web::rt::spawn(server);
        IdpServer { url, idp }
    }
}

async fn metadata(state: web::Data<IdpState>) -> HttpResponse {
    let certificate = STANDARD.encode(state.idp.certificate_der());
    HttpResponse::Ok()
        .content_type("application/samlmetadata+xml")
        .body(format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{url}/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
            entity = state.idp.entity_id,
            url = state.url,
        ))
}

#[derive(serde::Deserialize)]
struct SignInQuery {
    #[serde(rename = "SAMLRequest")]
    saml_request: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn sign_in(state: web::Data<IdpState>, query: web::Query<SignInQuery>) -> HttpResponse {
    let deflated = STANDARD
        .decode(&query.saml_request)
        .expect("a base64 AuthnRequest");
    let mut request = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .read_to_string(&mut request)
        .expect("a deflated AuthnRequest");
    let id = request
        .split(" ID=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the request's ID");
    let mut login = Login::new(&state.sp_base, &state.slug, &state.email);
    login.in_response_to = Some(id.to_owned());
    let groups: Vec<&str> = state.groups.iter().map(String::as_str).collect();
    let login = login.attribute("groups", &groups);
    let response = state.idp.response(&login, Signed::Both);
    let relay_state = query.relay_state.clone().unwrap_or_default();
    HttpResponse::Ok().content_type("text/html").body(format!(
        r#"<!doctype html><title>Test IdP</title><h1>Test IdP</h1><p>Signing in {email}</p>
<form method="post" action="{acs}"><input type="hidden" name="SAMLResponse" value="{response}"><input type="hidden" name="RelayState" value="{relay_state}"><button type="submit">Continue</button></form>"#,
        email = state.email,
        acs = login.acs,
    ))
}
