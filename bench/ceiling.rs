//! The ceiling for `bench/run`: a bare actix-web handler that answers every GET with the bytes of
//! a file (a SCIM user as idgate returns it), so the load generator measures HTTP and nothing else.
//!
//! Usage: bench-ceiling ADDRESS BODY_FILE

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let body = web::Bytes::from(std::fs::read(&args[1])?);
    HttpServer::new(move || {
        let body = body.clone();
        App::new().default_service(web::to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/scim+json")
                    .body(body)
            }
        }))
    })
    .bind(&args[0])?
    .run()
    .await
}
