"""Blyan Ledger's Python SDK for GPU nodes: sign commands, follow rounds, train with a
callback, commit and reveal deltas, and verify receipts offline (PROTOCOL.md)."""

from .client import ApiError, Client
from .crypto import Keypair
from .node import BaseModel, Item, Node, ProtocolError, RoundResult, Work, encode_delta
from .receipt import ReceiptError, verify

__all__ = [
    "ApiError",
    "BaseModel",
    "Client",
    "Item",
    "Keypair",
    "Node",
    "ProtocolError",
    "ReceiptError",
    "RoundResult",
    "Work",
    "encode_delta",
    "verify",
]
