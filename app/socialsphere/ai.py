"""AI caption generation behind a provider interface.

* ``OfflineProvider`` (default): deterministic templates, no network.
* ``OpenAIProvider``: any OpenAI-compatible ``/chat/completions`` endpoint
  (``SOCIALSPHERE_AI_BASE_URL``, ``_API_KEY``, ``_MODEL``, ``_TIMEOUT``).

Provider failures raise ``ProviderError`` which the API maps to 502 (bad upstream
answer) or 503 (unreachable, timeout, rate limited) JSON.
"""
from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from flask import current_app

PLATFORM_LIMITS = {"twitter": 280, "linkedin": 3000, "facebook": 2000, "instagram": 2200,
                   "mastodon": 500, "webhook": 2000}


@dataclass
class Generation:
    caption: str
    hashtags: list[str]
    provider: str


class ProviderError(Exception):
    def __init__(self, message: str, status: int = 502, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Provider(Protocol):
    name: str

    def generate(self, topic: str, tone: str, platform: str, max_hashtags: int) -> Generation: ...


def _hashtag(word: str) -> str:
    cleaned = re.sub(r"[^0-9A-Za-z_]", "", word.title().replace(" ", ""))
    return "#" + cleaned if cleaned else ""


class OfflineProvider:
    name = "offline"
    OPENERS = {
        "professional": "Here is what matters about {topic}:",
        "casual": "Let's talk about {topic} for a sec.",
        "enthusiastic": "Big news about {topic}!",
        "informative": "Did you know? A quick guide to {topic}.",
        "witty": "{topic}: because ordinary is overrated.",
    }
    BODIES = [
        "Three ideas you can use this week, and why they work.",
        "We gathered the essentials so you don't have to.",
        "Small steps, consistent effort, visible results.",
        "Share your experience in the comments.",
    ]

    def generate(self, topic: str, tone: str, platform: str, max_hashtags: int) -> Generation:
        seed = int(hashlib.sha256(f"{topic}|{tone}|{platform}".encode()).hexdigest(), 16)
        opener = self.OPENERS.get(tone, self.OPENERS["professional"]).format(topic=topic)
        body = self.BODIES[seed % len(self.BODIES)]
        caption = f"{opener} {body}"
        words = [w for w in re.split(r"\W+", topic) if len(w) > 2]
        tags: list[str] = []
        for candidate in [topic, *words, platform, "SocialMedia", "Marketing", "Growth"]:
            tag = _hashtag(candidate)
            if tag and tag.lower() not in {t.lower() for t in tags} and len(tag) <= 50:
                tags.append(tag)
        tags = tags[:max_hashtags]
        limit = PLATFORM_LIMITS.get(platform, 2000)
        reserve = sum(len(t) + 1 for t in tags)
        if len(caption) + reserve > limit:
            caption = caption[: max(0, limit - reserve - 1)].rstrip() + "…"
        return Generation(caption=caption, hashtags=tags, provider=self.name)


class OpenAIProvider:
    name = "openai"

    def __init__(self, base_url: str, api_key: str | None, model: str, timeout: float):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout

    def _request(self, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        # the URL comes from operator configuration (SOCIALSPHERE_AI_BASE_URL)
        req = urllib.request.Request(self.url, data=json.dumps(payload).encode(), headers=headers,  # noqa: S310
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                raw = resp.read(1_000_000)
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                retry = exc.headers.get("Retry-After")
                raise ProviderError("AI provider rate limited", 503,
                                    int(retry) if retry and retry.isdigit() else 30) from None
            if exc.code in (401, 403):
                raise ProviderError("AI provider rejected our credentials", 502) from None
            if exc.code >= 500:
                raise ProviderError(f"AI provider error (HTTP {exc.code})", 503, 10) from None
            raise ProviderError(f"AI provider refused the request (HTTP {exc.code})", 502) from None
        except TimeoutError:
            raise ProviderError("AI provider timed out", 503, 10) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ProviderError(f"AI provider unreachable: {type(exc).__name__}", 503, 10) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ProviderError("AI provider returned invalid JSON", 502) from None

    def generate(self, topic: str, tone: str, platform: str, max_hashtags: int) -> Generation:
        limit = PLATFORM_LIMITS.get(platform, 2000)
        prompt = (
            f"Write a {tone} social media caption for {platform} about: {topic}. "
            f"At most {limit} characters including up to {max_hashtags} hashtags. "
            'Answer with JSON only: {"caption": "...", "hashtags": ["#..."]}'
        )
        data = self._request({
            "model": self.model,
            "messages": [
                {"role": "system", "content": "You write concise, engaging social media posts."},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0.7,
            "response_format": {"type": "json_object"},
        })
        try:
            content = data["choices"][0]["message"]["content"]
            parsed = json.loads(content)
            caption = str(parsed["caption"]).strip()
            tags = [str(t).strip() for t in parsed.get("hashtags", []) if str(t).strip()]
        except (KeyError, IndexError, TypeError, ValueError):
            raise ProviderError("AI provider returned an unexpected answer", 502) from None
        if not caption:
            raise ProviderError("AI provider returned an empty caption", 502)
        tags = [t if t.startswith("#") else "#" + t for t in tags][:max_hashtags]
        return Generation(caption=caption[:limit], hashtags=[t[:50] for t in tags], provider=self.name)


def get_provider() -> Provider:
    cfg = current_app.config
    if cfg["AI_PROVIDER"] == "openai":
        return OpenAIProvider(cfg["AI_BASE_URL"], cfg["AI_API_KEY"], cfg["AI_MODEL"], cfg["AI_TIMEOUT"])
    return OfflineProvider()
