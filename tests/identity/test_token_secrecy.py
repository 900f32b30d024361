"""No token text in log records or rejection messages, across the whole bad-token corpus."""

from __future__ import annotations

import logging

import pytest
from identity_corpus import BAD_TOKENS, TokenContext, token_fragments
from identity_issuer import LocalIssuer, SigningKey

from credbroker.errors import IdentityRejected
from credbroker.identity.pods import PodRef
from credbroker.identity.serviceaccount import ServiceAccountTokenVerifier


async def test_corpus_leaks_no_token(
    issuer: LocalIssuer,
    verifier: ServiceAccountTokenVerifier,
    pod: PodRef,
    rogue_signing_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = TokenContext(issuer=issuer, pod=pod, rogue_key=rogue_signing_key)
    tokens = [issuer.token_for(pod)]
    messages: list[str] = []

    with caplog.at_level(logging.DEBUG):
        await verifier.verify(tokens[0], pod=pod)
        for case in BAD_TOKENS:
            token = case.build(context)
            tokens.append(token)
            with pytest.raises(IdentityRejected) as caught:
                await verifier.verify(token, pod=pod)
            messages += [str(caught.value), repr(caught.value), caught.value.message]

    assert len(messages) == 3 * len(BAD_TOKENS)
    assert caplog.records, "the verifier logged nothing, so the log check proved nothing"
    for token in tokens:
        for fragment in token_fragments(token):
            assert fragment not in caplog.text
            for message in messages:
                assert fragment not in message
