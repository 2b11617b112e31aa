"""Reading ahead: the next page of a listing is asked for while the caller reads this one, and nothing else changes
(every page once, in order, failures raised where the caller reaches them, the caller's priority kept)."""

import threading

import pytest

from defender.services import auth, budget
from defender.services.client import ApiClient
from defender.services.errors import ApiFailed
from tests.fixtures.connection import settings_for

PATIENCE = 10.0  # seconds: far beyond what a page of a few bytes takes, only so that a broken build fails, not hangs


class FixedTokens:
    def token(self):
        return "token"

    def drop(self):
        pass


class Pages:
    """A transport that answers three linked pages of two items each; page 2 may fail. Records each request as it
    arrives, with the thread's call-budget priority."""

    def __init__(self, base_url, failing_page=None):
        self.base_url = base_url
        self.failing_page = failing_page
        self.asked = []
        self.background = []
        self.second_asked = threading.Event()
        self.release_second = threading.Event()
        self.release_second.set()

    def send(self, method, url, params=None, data=None, headers=None):
        page = 1 if params else int(url.rsplit("=", 1)[1])
        self.asked.append(page)
        self.background.append(budget.in_background())
        if page == 2:
            self.second_asked.set()
            assert self.release_second.wait(PATIENCE)
        if page == self.failing_page:
            return Answer(500, b'{"error":{"code":"InternalError","message":"boom"}}')
        link = f',"@odata.nextLink":"{self.base_url}/api/alerts?page={page + 1}"' if page < 3 else ""
        return Answer(200, f'{{"value":[{{"id":"{page}a"}},{{"id":"{page}b"}}]{link}}}'.encode())


class Answer:
    def __init__(self, status, content, headers=None):
        self.status_code = status
        self.content = content
        self.headers = headers or {}


def client_over(simulator, pages):
    settings = settings_for(simulator, max_retries=0)
    api = ApiClient(settings, FixedTokens())
    api.transport = pages
    return api


def read_ahead_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("read-ahead")]


def test_reading_ahead_returns_every_page_once_in_order(clean_simulator):
    settings = settings_for(clean_simulator)
    api = ApiClient(settings, auth.TokenSource(settings))
    ids = [alert["id"] for alert in api.iter_items("/api/alerts", page_size=25, read_ahead=True)]
    assert ids == [alert["id"] for alert in clean_simulator.alerts]
    assert clean_simulator.api_calls == -(-len(ids) // 25)


def test_the_next_page_is_asked_for_while_the_caller_reads_this_one(simulator):
    pages = Pages(simulator.base_url)
    items = client_over(simulator, pages).iter_items("/api/alerts", {"$filter": "x"}, read_ahead=True)
    assert next(items)["id"] == "1a"
    # The caller holds the first item of page 1 and has not asked for more: page 2 is on its way all the same.
    assert pages.second_asked.wait(PATIENCE)
    assert [item["id"] for item in items] == ["1b", "2a", "2b", "3a", "3b"]
    assert pages.asked == [1, 2, 3]


def test_without_reading_ahead_the_next_page_waits_for_the_caller(simulator):
    pages = Pages(simulator.base_url)
    items = client_over(simulator, pages).iter_items("/api/alerts", {"$filter": "x"})
    assert next(items)["id"] == "1a"
    assert next(items)["id"] == "1b"
    assert pages.asked == [1]


def test_a_page_read_ahead_that_fails_is_raised_once_the_caller_has_read_the_page_before(simulator):
    pages = Pages(simulator.base_url, failing_page=2)
    items = client_over(simulator, pages).iter_items("/api/alerts", {"$filter": "x"}, read_ahead=True)
    read = []
    with pytest.raises(ApiFailed) as failure:
        for item in items:
            read.append(item["id"])
    assert read == ["1a", "1b"]
    assert "HTTP 500" in str(failure.value)
    assert not read_ahead_threads()


def test_a_page_read_ahead_keeps_the_callers_background_priority(simulator):
    pages = Pages(simulator.base_url)
    with budget.background():
        list(client_over(simulator, pages).iter_items("/api/alerts", {"$filter": "x"}, read_ahead=True))
    assert pages.background == [True, True, True]
    pages = Pages(simulator.base_url)
    list(client_over(simulator, pages).iter_items("/api/alerts", {"$filter": "x"}, read_ahead=True))
    assert pages.background == [False, False, False]


def test_a_caller_that_stops_early_gets_the_client_back_with_no_page_in_flight(simulator):
    pages = Pages(simulator.base_url)
    pages.release_second.clear()  # page 2 is held on the wire until the caller has stopped
    items = client_over(simulator, pages).iter_items("/api/alerts", {"$filter": "x"}, read_ahead=True)
    assert next(items)["id"] == "1a"
    assert pages.second_asked.wait(PATIENCE)
    closing = threading.Thread(target=items.close)
    closing.start()
    closing.join(0.2)
    assert closing.is_alive(), "closing waits for the page in flight"
    pages.release_second.set()
    closing.join(PATIENCE)
    assert not closing.is_alive()
    assert pages.asked == [1, 2]  # nothing asked after the caller stopped
    assert not read_ahead_threads()
