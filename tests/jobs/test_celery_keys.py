"""Job keys under Celery (real redis-server): a job that sends itself again (a retry, ``RetryAt``) keeps holding
its key for as long as it waits, however long that is, so no sweep can queue the same work meanwhile."""

from __future__ import annotations

from pathlib import Path

from fhir_server.jobs.celery_app import KEY_PREFIX, CeleryQueue
from fhir_server.settings import JobsSettings, Settings, StorageSettings
from tests.workflows.notifications._servers import RedisServer


async def test_a_resent_job_keeps_its_key_for_its_whole_wait(tmp_path: Path) -> None:
    from redis import Redis

    from fhir_server.jobs.wiring import load_modules

    load_modules()

    redis = RedisServer(tmp_path)
    try:
        settings = Settings(data_dir=tmp_path, storage=StorageSettings(sqlite_path=tmp_path / "t.db"),
                            jobs=JobsSettings(backend="celery", redis_url=redis.url, key_ttl_s=60))
        queue = CeleryQueue(settings)
        client = Redis.from_url(redis.url)
        now = queue.clock.now()
        assert await queue.enqueue("hl7.send_order", "sr-1", key="hl7-order:sr-1")
        assert 0 < client.ttl(KEY_PREFIX + "hl7-order:sr-1") <= 60
        assert not await queue.enqueue("hl7.send_order", "sr-1", key="hl7-order:sr-1")  # held: not twice
        # the job runs and sends itself again for two hours later: the key must last past that
        assert await queue.enqueue("hl7.send_order", "sr-1", at=now + 7200, key="hl7-order:sr-1", attempt=2)
        assert client.ttl(KEY_PREFIX + "hl7-order:sr-1") > 7200
        assert not await queue.enqueue("hl7.send_order", "sr-1", key="hl7-order:sr-1")
        client.close()
    finally:
        redis.stop()
