"""The ledger's HTTP API and its WebSocket, with retries, in the standard library plus
``websockets``."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from typing import Any

from blake3 import blake3
from google.protobuf.message import DecodeError
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from . import crypto, receipt
from .v1 import envelope_pb2


class ApiError(Exception):
    """The server refused: its status and its JSON ``{code, message}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"server answered {status}: {message} ({code})")
        self.status, self.code, self.message = status, code, message

    @property
    def retryable(self) -> bool:
        # A heartbeat too soon stays too soon for its whole window; the caller
        # decides when to send the next, as the Rust SDK does.
        return self.status >= 500 or (
            self.status == 429
            and self.code not in ("heartbeat_too_soon", "registration_rate_limited")
        )


class Client:
    """One ledger server. Every request is retried with exponential backoff and full
    jitter on transport failures, 5xx and most 429s; a command is resent as the same
    bytes, so a retry gets the original answer."""

    def __init__(self, base_url: str, attempts: int = 8, timeout: float = 30.0):
        if attempts < 1:
            raise ValueError("a client makes at least one attempt")
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.timeout = timeout

    def _once(self, method: str, path: str, body: bytes | None, headers: dict) -> bytes:
        request = urllib.request.Request(
            self.base_url + path, data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                answer = json.loads(text)
                code, message = answer["code"], answer["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "unexpected_response", text
            raise ApiError(error.code, code, message) from None

    def _request(self, method: str, path: str, body: bytes | None = None, **headers) -> bytes:
        for attempt in range(self.attempts):
            try:
                return self._once(method, path, body, headers)
            except ApiError as error:
                if not error.retryable or attempt + 1 == self.attempts:
                    raise
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if attempt + 1 == self.attempts:
                    raise
            time.sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))
        raise AssertionError("unreachable")

    def get_json(self, path: str) -> Any:
        return json.loads(self._request("GET", path))

    def state(self) -> dict:
        return self.get_json("/v1/state")

    def head(self) -> dict:
        return self.get_json("/v1/head")

    def submit(self, signed: bytes) -> dict:
        """Posts an encoded ``SignedCommand``: ``{"seq", "event_hash"}``, or
        ``{"window"}`` for a heartbeat, which is logged when its window closes."""
        return json.loads(
            self._request(
                "POST", "/v1/commands", signed, **{"Content-Type": "application/x-protobuf"}
            )
        )

    def put_blob(self, data: bytes) -> dict:
        name = blake3(data).hexdigest()
        return json.loads(
            self._request(
                "PUT", f"/v1/blobs/{name}", data, **{"Content-Type": "application/octet-stream"}
            )
        )

    def blob(self, name: bytes) -> bytes:
        """A whole blob, checked against its name: a server can't hand out other bytes."""
        data = self._request("GET", f"/v1/blobs/{name.hex()}")
        if blake3(data).digest() != name:
            raise ValueError(f"blob {name.hex()} does not hash to its name")
        return data

    def assignment(self, round_id: int, node: bytes) -> dict:
        return self.get_json(f"/v1/rounds/{round_id}/assignments/{node.hex()}")

    def round_model(self, round_id: int) -> dict:
        return self.get_json(f"/v1/rounds/{round_id}/model")

    def receipt(self, round_id: int, key: bytes) -> dict:
        """A round's receipt for ``key``, read as the Rust SDK reads it (no repeated key)."""
        return receipt.loads(self._request("GET", f"/v1/rounds/{round_id}/receipts/{key.hex()}"))

    def subscribe(self, start: int, wait: float | None = None) -> Subscription:
        return Subscription(self, start, wait)


class Subscription:
    """The log's records from ``start`` on, in seq order without gaps or repeats, across
    reconnects. Each record's hash is recomputed, and from the second record on, each
    must name the one before as its ``prev_hash``, at a time no earlier: a server can't
    splice the stream."""

    def __init__(self, client: Client, start: int, wait: float | None):
        self.client = client
        self.seq_next = start
        self.head: bytes | None = None
        self.time_ms = 0
        self.wait = wait
        self._socket = None

    def _url(self) -> str:
        return self.client.base_url.replace("http", "ws", 1) + f"/v1/events/ws?from={self.seq_next}"

    def next(self) -> envelope_pb2.EventRecord | None:
        """The next record, or ``None`` when ``wait`` seconds pass without one. A broken
        connection, a record that does not decode or a gap reconnects from the next
        seq; ``attempts`` failures in a row raise the last one."""
        failures = 0
        while True:
            try:
                if self._socket is None:
                    self._socket = connect(self._url(), max_size=None, open_timeout=30)
                try:
                    message = self._socket.recv(timeout=self.wait)
                except TimeoutError:
                    return None
                if isinstance(message, str):
                    continue
                record = self._check(envelope_pb2.EventRecord.FromString(message))
                if record is None:
                    continue
                return record
            except (OSError, WebSocketException, DecodeError, ValueError):
                self.close()
                failures += 1
                if failures >= self.client.attempts:
                    raise
                time.sleep(random.uniform(0, min(5.0, 0.05 * 2**failures)))

    def _check(self, record: envelope_pb2.EventRecord) -> envelope_pb2.EventRecord | None:
        """``record`` if it is the next one and continues the chain; ``None`` for one
        already delivered (a reconnect's overlap)."""
        if record.seq < self.seq_next:
            return None
        if record.seq > self.seq_next:
            raise ValueError(f"expected seq {self.seq_next}, got {record.seq}")
        hashed = crypto.record_hash(record.prev_hash, record.seq, record.time_ms, record.body)
        if hashed != record.hash:
            raise ValueError(f"record {record.seq}'s hash does not match its contents")
        if self.head is not None and (record.prev_hash != self.head or record.time_ms < self.time_ms):
            raise ValueError(f"record {record.seq} does not continue the chain")
        if record.seq == 0 and record.prev_hash != bytes(32):
            raise ValueError("record 0 names a previous record")
        self.head, self.time_ms = hashed, record.time_ms
        self.seq_next += 1
        return record

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
