"""Workers dying and queues filling, against the real TorchServe: with two workers and the client's one retry, a
worker SIGKILLed under load costs no request (and the retried answers are the same pixels); a burst over the
frontend's queue gets TorchServe's own 503, which the client retries."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from ganserve.benchmarks.serve import kill_one_worker, wait_workers_ready
from ganserve.sampling import sample
from ganserve.serving.launcher import Server
from ganserve.serving.store import ArchiveOptions

pytestmark = pytest.mark.slow


def test_a_worker_killed_under_load_loses_no_request(tiny_path, tiny, tmp_path):
    options = ArchiveOptions(batch_size=2, max_batch_delay_ms=5, min_workers=2, max_workers=2)
    with Server({"tiny": tiny_path}, tmp_path, archive=options) as server:
        client = server.client()  # one retry of a 507 / 503, the default
        n, answered, lock, killed = 160, [], threading.Lock(), {}

        def one(seed: int):
            r = client.predict_raw("tiny", {"seeds": [seed]})
            with lock:
                answered.append(seed)
                kill = len(answered) == n // 4
            if kill:
                killed["pid"] = kill_one_worker(client, "tiny")
            return r

        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(one, range(n)))
        assert "pid" in killed
        assert [r.status_code for r in responses] == [200] * n
        expected = np.concatenate([sample(tiny, seeds=list(range(i, min(i + 64, n)))).images for i in range(0, n, 64)])
        for seed, r in enumerate(responses):
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), expected[seed])
        assert wait_workers_ready(client, "tiny", killed["pid"]) is not None  # TorchServe replaced it


def test_a_burst_over_the_queue_gets_torchserves_503(tiny_path, tmp_path):
    options = ArchiveOptions(batch_size=1, max_batch_delay_ms=1, min_workers=1, max_workers=1)
    with Server({"tiny": tiny_path}, tmp_path, archive=options, job_queue_size=1) as server:
        client = server.client(retries=0)
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda s: client.predict_raw("tiny", {"seeds": [s, s + 1]}), range(48)))
        busy = [r for r in responses if r.status_code == 503]
        assert busy and all(r.status_code in (200, 503) for r in responses)
        # the frontend's answer, not ganserve's: no Retry-After, a JSON body about scaling workers
        assert busy[0].json()["code"] == 503 and "scale workers" in busy[0].json()["message"]
        assert "Retry-After" not in busy[0].headers
