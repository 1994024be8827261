//! The blob store through the real binary: content-addressed uploads that are checked,
//! size-limited, idempotent, durable once acknowledged, and served with ranges.

use blyan_e2e::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|index| (index as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn name(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

async fn put(server: &Server, hash: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .put(format!("{}/v1/blobs/{hash}", server.url))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn get(server: &Server, hash: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::new().get(format!("{}/v1/blobs/{hash}", server.url));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Writes `head` and `body` on a raw connection, then closes it or reads the answer.
async fn raw(server: &Server, head: String, body: &[u8], read_answer: bool) -> String {
    let address = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before the whole body is sent.
    let _ = stream.write_all(body).await;
    if !read_answer {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn healthy(server: &Server) {
    let response = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_blob_is_stored_once_checked_and_served_whole_or_in_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let bytes = blob(300_000, 7);
    let hash = name(&bytes);

    // The dev genesis's model weights are the first blobs.
    let count = || blyan_e2e::metric(&server.url, "blyan_blobs");
    let stored = || blyan_e2e::metric(&server.url, "blyan_blob_bytes");
    let (blobs_before, bytes_before) = (count().await.unwrap(), stored().await.unwrap());
    let (status, body) = put(&server, &hash, bytes.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hash"], hash);
    assert_eq!(body["bytes"], bytes.len());
    // The same blob again gets the same answer, and is not counted twice.
    assert_eq!(put(&server, &hash, bytes.clone()).await, (200, body));
    assert_eq!(count().await, Some(blobs_before + 1.0));
    assert_eq!(stored().await, Some(bytes_before + bytes.len() as f64));

    assert_eq!(get(&server, &hash, None).await, (200, bytes.clone()));
    let (status, part) = get(&server, &hash, Some("bytes=1000-1999")).await;
    assert_eq!(status, 206);
    assert_eq!(part, bytes[1000..2000]);

    // HEAD gives the size without the bytes; a copy no older than the blob is not
    // sent again (304); each is in the OpenAPI document, as the 206 is.
    let http = reqwest::Client::new();
    let url = format!("{}/v1/blobs/{hash}", server.url);
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()[reqwest::header::CONTENT_LENGTH],
        bytes.len().to_string().as_str()
    );
    let modified = head.headers()[reqwest::header::LAST_MODIFIED].clone();
    let again = http
        .get(&url)
        .header(reqwest::header::IF_MODIFIED_SINCE, modified)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let document: serde_json::Value = reqwest::get(format!("{}/v1/openapi.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = &document["paths"]["/v1/blobs/{hash}"];
    for status in ["200", "206", "304", "416"] {
        assert!(item["get"]["responses"][status].is_object(), "GET {status}");
    }
    assert!(item["head"]["responses"]["200"].is_object());
    let headers: Vec<&str> = item["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|parameter| parameter["in"] == "header")
        .map(|parameter| parameter["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        headers,
        ["Range", "If-Modified-Since", "If-Unmodified-Since"]
    );

    // A range past the end is refused with the JSON error body.
    let response = reqwest::Client::new()
        .get(format!("{}/v1/blobs/{hash}", server.url))
        .header("range", "bytes=900000-900010")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 416);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "range_not_satisfiable");

    let unknown = name(b"never uploaded");
    let (status, _) = get(&server, &unknown, None).await;
    assert_eq!(status, 404);
    let response = reqwest::get(format!("{}/v1/blobs/{unknown}", server.url))
        .await
        .unwrap();
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "blob_not_found");
    let (status, error) = put(&server, "not-hex", bytes).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("malformed_request"))
    );
}

#[tokio::test]
async fn bad_uploads_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--blob-bytes-max", "100000"]).await;

    // Content that does not hash to its name.
    let bytes = blob(5_000, 1);
    let wrong = name(b"something else");
    let (status, error) = put(&server, &wrong, bytes.clone()).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (422, Some("blob_hash_mismatch")),
        "{error}"
    );
    assert_eq!(get(&server, &wrong, None).await.0, 404);

    // Too large, declared: refused before the body is read.
    let big = blob(100_001, 2);
    let big_hash = name(&big);
    let (status, error) = put(&server, &big_hash, big.clone()).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (413, Some("blob_too_large"))
    );
    let answer = raw(
        &server,
        format!(
            "PUT /v1/blobs/{big_hash} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000\r\n\r\n"
        ),
        &[],
        true,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Too large, undeclared (chunked): refused once the limit is passed.
    let mut chunked = Vec::new();
    for chunk in big.chunks(10_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(
        &server,
        format!(
            "PUT /v1/blobs/{big_hash} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        ),
        &chunked,
        true,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(get(&server, &big_hash, None).await.0, 404);

    // Truncated: the connection closes halfway through the declared body.
    let whole = blob(50_000, 3);
    let whole_hash = name(&whole);
    raw(
        &server,
        format!(
            "PUT /v1/blobs/{whole_hash} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            whole.len()
        ),
        &whole[..whole.len() / 2],
        false,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(get(&server, &whole_hash, None).await.0, 404);
    healthy(&server).await;
    // Nothing of the cut upload is left behind.
    let incoming = std::fs::read_dir(dir.path().join("blobs/incoming"))
        .unwrap()
        .count();
    assert_eq!(incoming, 0);
    // And the whole blob still uploads.
    assert_eq!(put(&server, &whole_hash, whole).await.0, 200);
}

#[tokio::test]
async fn concurrent_uploads_of_one_blob_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let bytes = blob(2_000_000, 9);
    let hash = name(&bytes);
    let uploads = (0..8).map(|_| put(&server, &hash, bytes.clone()));
    for (status, body) in futures_util::future::join_all(uploads).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["bytes"], bytes.len());
    }
    assert_eq!(get(&server, &hash, None).await, (200, bytes));
}

#[tokio::test]
async fn an_acknowledged_blob_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;
    let bytes = blob(1_000_000, 5);
    let hash = name(&bytes);
    assert_eq!(put(&server, &hash, bytes.clone()).await.0, 200);
    let stored = blyan_e2e::metric(&server.url, "blyan_blob_bytes").await;
    server.kill9();
    server.restart().await;
    assert_eq!(get(&server, &hash, None).await, (200, bytes));
    // The restarted server counts what the folder holds.
    assert_eq!(
        blyan_e2e::metric(&server.url, "blyan_blob_bytes").await,
        stored
    );
}
