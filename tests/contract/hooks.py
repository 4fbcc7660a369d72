"""Schemathesis hooks of the contract test (tests/tests/contract.rs loads them with
SCHEMATHESIS_HOOKS=hooks and this directory on PYTHONPATH).

They only make reachable what random data cannot reach, and never turn an invalid request into
a valid one:

* Orders and reservations: a random SKU is never in the catalog, so no order or reservation
  would ever be created and the document's links (read, confirm, release, pay, cancel) would
  never be followed. A request whose `items` are already schema-valid gets the seeded SKUs
  (`CONTRACT_SKUS`) instead of its own; anything else is sent as generated. A valid
  Idempotency-Key, reservation id or adjustment id gets a unique suffix (hypothesis draws the
  same few values again and again, and reusing one for another body is rightly 422).
* createOrder may start a stateful scenario (see `after_load_schema`). A schema-valid
  `coupon_code` names the seeded coupon (a random code never exists, so the coupon's pricing
  would never be reached); anything else is sent as generated.
* Coupons: a try names the seeded coupon (`CONTRACT_COUPON`) unless it names one the run
  created, in that coupon's currency, with a unique redemption id; a put gets a unique code
  (so it creates, and never replaces the seeded coupon).
* Flash sales: a valid generated sale id of a purchase names the seeded sale
  (`CONTRACT_SALE`, started, plenty of units); a valid Idempotency-Key gets a unique suffix.
  A put with a valid sale id gets a unique one (so it creates, and never changes the seeded
  sale), and a schema-valid body sells a seeded SKU in EUR inside a window open now (random
  date-times are mostly in the past, or end before they start).
* The payment webhook: every delivery is signed as the provider signs it (`Stripe-Signature`,
  HMAC-SHA256 of "{t}.{raw body}" with the e2e secret, `CONTRACT_WEBHOOK_SECRET`), over the exact
  bytes sent, so a valid event can reach 200. The one rule of a refund JSON Schema cannot state
  (`amount_refunded` <= `amount`) is applied to otherwise valid refunds.
* `filter_failure`: the few refusals of schema-valid requests that depend on the shop's state,
  not on the request's shape (listed in ALLOWED_REFUSALS, each with its reason). Only those exact
  problems (operation, status, problem type or field) are dropped; any other refusal fails.
"""

import hashlib
import hmac
import json
import os
import re
import time

import schemathesis

SKUS = [s for s in os.environ.get("CONTRACT_SKUS", "").split(",") if s]
COUPON = os.environ.get("CONTRACT_COUPON", "")
SALE = os.environ.get("CONTRACT_SALE", "")
SECRET = os.environ.get("CONTRACT_WEBHOOK_SECRET", "").encode()

SKU_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
QUANTITY_MAX = 1_000_000
MONEY_MAX = 2**53 - 1

ITEM_OPERATIONS = {("POST", "/api/orders"), ("POST", "/api/stock/reservations")}
WEBHOOK = ("POST", "/api/payments/webhook")


def _is_int(v):
    """A JSON Schema integer: `3` or `3.0` (the server reads both as 3), never `true`."""
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


def _valid_items(items):
    """`items` as CreateOrder / ReservationRequest define them (1-100 objects, sku, quantity)."""
    if not isinstance(items, list) or not 1 <= len(items) <= 100:
        return False
    for item in items:
        if not isinstance(item, dict):
            return False
        sku, qty = item.get("sku"), item.get("quantity")
        if not (isinstance(sku, str) and SKU_RE.fullmatch(sku)):
            return False
        if not (_is_int(qty) and 1 <= qty <= QUANTITY_MAX):
            return False
    return True


def _map_items(body):
    items = body.get("items")
    if not SKUS or not _valid_items(items):
        return
    # Distinct SKUs: at most one line per seeded product (still 1-100 items).
    mapped = [dict(item, sku=sku) for item, sku in zip(items, SKUS)]
    body["items"] = mapped


IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,254}$")
_calls = iter(range(1, 1 << 62))


def _fresh_idempotency_key(case):
    """A valid generated Idempotency-Key gets a unique suffix: hypothesis draws the same few keys
    again and again, and a key reused for another body is (rightly) 422, so no order would be
    created. Still a valid key; an invalid one is sent as generated."""
    headers = case.headers or {}
    name = next((h for h in headers if h.lower() == "idempotency-key"), None)
    value = headers.get(name) if name else None
    if not isinstance(value, str) or not IDEMPOTENCY_KEY_RE.fullmatch(value):
        return
    suffix = f"~{next(_calls)}"
    headers[name] = value[: 255 - len(suffix)] + suffix


CALLER_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _fresh_id(body, member):
    """Likewise for a valid `reservation_id` / `adjustment_id`: the same id with another body is
    (rightly) 422."""
    value = body.get(member)
    if not isinstance(value, str) or not CALLER_ID_RE.fullmatch(value):
        return
    suffix = f"-c{next(_calls)}"
    body[member] = value[: 128 - len(suffix)] + suffix


CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
COUPON_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The currency of every coupon this run knows: the seeded one, and those putCoupon created.
_coupon_currency = {COUPON: "EUR"} if COUPON else {}
TRY_COUPON = ("POST", "/api/coupons/{code}/redemptions")
PUT_COUPON = ("PUT", "/api/coupons/{code}")


def _coupon_try(case):
    """A try with a valid code names a coupon that exists (a random code never does): one this
    run created, else the seeded one; a valid currency becomes that coupon's (a coupon is for orders in its
    currency), and a valid redemption id gets a unique suffix. An invalid body stays invalid."""
    params = case.path_parameters if case.path_parameters is not None else {}
    code = params.get("code")
    valid = isinstance(code, str) and COUPON_CODE_RE.fullmatch(code)
    if valid and code not in _coupon_currency and COUPON:
        params["code"] = COUPON
        case.path_parameters = params
    if not isinstance(case.body, dict):
        return
    _fresh_id(case.body, "redemption_id")
    currency = case.body.get("currency")
    if isinstance(currency, str) and CURRENCY_RE.fullmatch(currency):
        case.body["currency"] = _coupon_currency.get(params.get("code"), currency)


def _order_coupon(body):
    """An order's schema-valid coupon code becomes the seeded coupon's (EUR, like the seeded
    products): the order tries it and prices its discount in."""
    code = body.get("coupon_code")
    if COUPON and isinstance(code, str) and COUPON_CODE_RE.fullmatch(code):
        body["coupon_code"] = COUPON


def _coupon_put(case):
    """A valid generated code gets a unique suffix, so a put creates a coupon (201, whose links
    the stateful phase follows) instead of replacing one drawn again; the seeded coupon is never
    replaced (the tries rely on its rules)."""
    params = case.path_parameters or {}
    code = params.get("code")
    if not isinstance(code, str) or not COUPON_CODE_RE.fullmatch(code):
        return
    suffix = f"-p{next(_calls)}"
    params["code"] = code[: 64 - len(suffix)] + suffix


SALE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]*[A-Za-z0-9_:-][A-Za-z0-9._:-]*$")
PURCHASE = ("POST", "/api/flash-sales/{sale_id}/purchase")
PUT_SALE = ("PUT", "/api/flash-sales/{sale_id}")
SALE_FIELDS = ("sku", "price", "currency", "quantity", "per_user_limit", "starts_at", "ends_at")


def _valid_sale_id(params):
    value = params.get("sale_id")
    return isinstance(value, str) and len(value) <= 64 and SALE_ID_RE.fullmatch(value)


def _purchase(case):
    """A valid sale id names the seeded sale (a random one never exists); a valid key is made
    unique (a key already used answers its ticket, 200, never a new one)."""
    params = case.path_parameters if case.path_parameters is not None else {}
    if SALE and _valid_sale_id(params):
        params["sale_id"] = SALE
        case.path_parameters = params
    _fresh_idempotency_key(case)


def _put_sale(case):
    """A unique valid sale id; a schema-valid body sells a seeded SKU in EUR, open now for an
    hour. An invalid body stays invalid."""
    params = case.path_parameters or {}
    if _valid_sale_id(params):
        suffix = f"-s{next(_calls)}"
        params["sale_id"] = params["sale_id"][: 64 - len(suffix)] + suffix
    body = case.body
    if not (SKUS and isinstance(body, dict) and set(SALE_FIELDS) <= set(body)):
        return
    if not (isinstance(body["sku"], str) and SKU_RE.fullmatch(body["sku"])):
        return
    if not (isinstance(body["currency"], str) and CURRENCY_RE.fullmatch(body["currency"])):
        return
    starts, ends = body["starts_at"], body["ends_at"]
    if not (isinstance(starts, str) and isinstance(ends, str)):
        return
    now = int(time.time())
    body["sku"] = SKUS[next(_calls) % len(SKUS)]
    body["currency"] = "EUR"
    body["starts_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    body["ends_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600))


def _clamp_refund(body):
    """A refund of more than was charged is refused (400), a rule the schema cannot state."""
    if body.get("type") != "charge.refunded":
        return
    obj = (body.get("data") or {}).get("object") if isinstance(body.get("data"), dict) else None
    if not isinstance(obj, dict):
        return
    amount, refunded = obj.get("amount"), obj.get("amount_refunded")
    if _is_int(amount) and _is_int(refunded) and 0 <= amount <= MONEY_MAX and refunded > amount >= 0:
        obj["amount_refunded"] = amount


def _sign(request):
    """requests auth: signs the prepared request's exact body bytes, at send time."""
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    t = str(int(time.time()))
    mac = hmac.new(SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    request.headers["Stripe-Signature"] = f"t={t},v1={mac}"
    return request


@schemathesis.hook
def before_call(context, case, kwargs):
    key = (case.method.upper(), case.path)
    if key in ITEM_OPERATIONS and isinstance(case.body, dict):
        _map_items(case.body)
    if key == ("POST", "/api/orders"):
        _fresh_idempotency_key(case)
        if isinstance(case.body, dict):
            _order_coupon(case.body)
    if key == ("POST", "/api/stock/reservations") and isinstance(case.body, dict):
        _fresh_id(case.body, "reservation_id")
    if key == ("POST", "/api/products/{sku}/stock-adjustments") and isinstance(case.body, dict):
        _fresh_id(case.body, "adjustment_id")
    elif key == TRY_COUPON:
        _coupon_try(case)
    elif key == PUT_COUPON:
        _coupon_put(case)
    elif key == PURCHASE:
        _purchase(case)
    elif key == PUT_SALE:
        _put_sale(case)
    elif key == WEBHOOK:
        if isinstance(case.body, dict):
            _clamp_refund(case.body)
        kwargs["auth"] = _sign


@schemathesis.hook
def after_call(context, case, response):
    """Remembers the currency of every coupon putCoupon wrote."""
    if (case.method.upper(), case.path) != PUT_COUPON or response.status_code not in (200, 201):
        return
    body = _problem(response)
    if body and isinstance(body.get("code"), str):
        _coupon_currency[body["code"]] = body.get("currency")


@schemathesis.hook
def after_load_schema(context, schema):
    """Schemathesis infers from its name that `user_id` of createOrder refers to a "User"
    resource (and `customer_id` of reserveStock to a "Customer"), which no operation produces,
    so neither would start a stateful scenario and their links (read, pay, cancel; read,
    confirm, release) would never be followed. The customer is the bearer token's `sub`, not a
    resource of this API: drop those inferred inputs."""
    graph = schema.analysis.dependency_graph.operations
    for operation, resource in [("POST /api/orders", "User"), ("POST /api/stock/reservations", "Customer")]:
        node = graph.get(operation)
        if node is not None:
            node.inputs = [slot for slot in node.inputs if slot.resource.name != resource]



# (method, path, status) -> what identifies the refusal in the problem body (a rule, or a list
# of rules of which one must match), and why a schema-valid request may legitimately get it.
ALLOWED_REFUSALS = {
    # An opaque cursor is only valid as the server issued it; a generated one is forged.
    ("GET", "/api/orders", 400): {"field": "cursor"},
    # The seeded products share a currency until a generated PUT reprices one of them in
    # another: an order or reservation across currencies is then (rightly) refused.
    # ... and a generated PUT may reprice one so high that a generated quantity makes the
    # order's total pass 2^53 - 1, which no order may (the problem says so, naming `items`).
    ("POST", "/api/orders", 422): [
        {"type_suffix": ("/mixed-currencies",)},
        {"field": "items", "detail_has": "2^53 - 1"},
    ],
    ("POST", "/api/stock/reservations", 422): {"type_suffix": ("/mixed-currencies",)},
    # `stock` on a product that exists already (the schema cannot know what exists).
    ("PUT", "/api/products/{sku}", 422): {"field": "stock", "has": "sku"},
    # The seeded products share a currency until a generated PUT reprices one of them in
    # another: a flash price in EUR is then (rightly) refused, naming `currency`.
    ("PUT", "/api/flash-sales/{sale_id}", 422): {"field": "currency"},
    # A coupon's window must end after it starts (a rule between two members).
    ("PUT", "/api/coupons/{code}", 422): {"field": "ends_at"},
}


def _problem(response):
    try:
        body = json.loads(response.content)
    except (TypeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """False drops the failure: only a listed business refusal of a schema-valid request."""
    if type(failure).__name__ != "RejectedPositiveData":
        return True
    rules = ALLOWED_REFUSALS.get((case.method.upper(), case.path, response.status_code))
    problem = _problem(response)
    if rules is None or problem is None:
        return True
    rules = rules if isinstance(rules, list) else [rules]
    return not any(_matches(rule, problem) for rule in rules)


def _matches(rule, problem):
    """Whether `problem` is the refusal `rule` describes (every condition it lists holds)."""
    if "field" in rule and problem.get("field") != rule["field"]:
        return False
    if "has" in rule and rule["has"] not in problem:
        return False
    if "type_suffix" in rule and not str(problem.get("type", "")).endswith(rule["type_suffix"]):
        return False
    if "detail_has" in rule and rule["detail_has"] not in str(problem.get("detail", "")):
        return False
    return True
