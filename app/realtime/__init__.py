"""The realtime layer: the live seat map over WebSocket, fanned out through Redis.

Modules (centrifuge's split): `broker` (the Broker protocol: publish with offsets, history
and epoch, subscribe, presence counts; implemented by `broker_redis` for one Redis,
`broker_cluster` for a Redis Cluster with sharded pub/sub, `broker_memory` in-process),
`hub` (this process's watchers per show, frames encoded once, snapshots and resyncs),
`protocol` (one connection: frames in, bounded queue out), `outbox` (publish after
commit, relay rows left behind), `service` (the `Realtime` facade the core wires),
`frames` (msgspec Structs; `contract` writes README's table of them).

Wire protocol (`/ws`, JSON text frames; DESIGN.md "WebSocket /ws")
- in: subscribe {show_id, offset?, encoding?: "rle"}, unsubscribe {show_id}, ping.
  Subscribing again to a show is a resync request. At most 32 shows per connection.
- out: snapshot, seats {show_id, offset, changes, ts}, show, announcement, presence, pong,
  error {code, message, show_id?}. A `seats` frame may carry several commits' changes
  (one per seat, the highest version); `ts` is the oldest commit time in it.
- error codes: bad_json, invalid_frame, unknown_type, frame_too_large (> 16 KiB),
  unknown_show, not_subscribed, too_many_subscriptions, rate_limited, unavailable,
  internal (the server failed on the frame; the connection stays usable).
- close codes: 1008 flooding (20 frames/s, burst 40; closed after 50 over the limit within 10 s),
  1011 internal error (the connection's state was in doubt), 1012 server restarting,
  4008 slow consumer (its backlog overflowed 1 MiB twice within 30 s; the first time it
  got a fresh snapshot instead), 4401 invalid `?token=`.
- offsets are "<epoch>:<n>" (n in ASCII digits), opaque to clients; an offset from another
  epoch, trimmed history (2,000 events per show), the future, or garbage gets a snapshot
  instead of a replay.

Redis keys and channels are named in `keys` (RedisKeys), under the deployment's prefix
(MODEX_REDIS_PREFIX, or modex:<deployment id>) and with the hash tag {show:ID}:
<prefix>:{show:ID}:meta (hash e=epoch, n=offset), :stream (history), :events (channel),
:presence (hash instance -> count:ms), :availability (the core's cache, deleted on every
seat change). An epoch starts with its namespace's tag; the reader drops other epochs.
"""
