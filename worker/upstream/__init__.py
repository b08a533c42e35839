"""The transport shared by every upstream kind: HTTP, retry policies, failure events, paging, probes.

Composition order, the same in every client: ``retrying(lambda: breaker.call(transport_call))`` --
tenacity outside, the breaker around each attempt, errors classified at the transport edge. The clients
themselves live with their kind in ``worker.kinds``.
"""

from worker.upstream.retry import build_retrying

__all__ = ["build_retrying"]
