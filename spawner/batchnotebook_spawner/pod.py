"""Pod profiles: a server that runs as an ordinary pod in the hub's own cluster, via KubeSpawner.

BatchNotebookSpawner composes a KubeSpawner, it does not subclass it. When the user chooses a pod
profile (user_options {"pod": "<name>"}), the spawner creates a child KubeSpawner with its own
user, hub, config and orm_spawner, configured with the profile's `kubespawner_override`, and hands
start, poll, stop, progress and state to it. The state keeps the child's state under "pod", so a
restarted hub recreates the child and keeps following the running pod.

The server's API token does not go into the pod's spec (KubeSpawner would write it there as a
plain env value, readable by anyone who may read pods): it goes into a Secret owned by the pod,
and the pod reads it through `valueFrom.secretKeyRef`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

from jupyterhub.utils import maybe_future
from kubernetes_asyncio.client import (
    ApiException,
    V1EnvVar,
    V1EnvVarSource,
    V1Pod,
    V1SecretKeySelector,
)
from kubespawner import KubeSpawner
from kubespawner.slugs import safe_slug
from tornado import web
from traitlets import Dict, List, TraitError

from batchnotebook_api import GROUP
from batchnotebook_api.errors import InvalidOptions

from .form import profile_allowed, user_group_names

POD_OPTION = "pod"  # user_options {"pod": "<name>"} choose a pod profile
PROFILE_KEYS = {"name", "display_name", "description", "groups", "kubespawner_override"}
PROFILE_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")  # a label value
# What the hub gives every spawner it creates; the child gets the same from its parent.
SPAWNER_WIRING = (
    "user",
    "orm_spawner",
    "hub",
    "authenticator",
    "config",
    "proxy_spec",
    "_deprecated_db_session",
    "oauth_client_id",
    "cookie_options",
    "cookie_host_prefix_enabled",
    "trusted_alt_names",
    "public_url",
    "public_hub_url",
    "internal_ssl",
    "internal_trust_bundles",
    "internal_certs_location",
)
# What the hub sets on a spawner just before start().
SET_BEFORE_START = ("api_token", "admin_access", "cert_paths")


class PodProfiles(List):
    """BatchNotebookSpawner.pod_profiles: a list of
    {name, display_name, description, groups, kubespawner_override}, checked when configured."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Dict(), **kwargs)

    def validate(self, obj: Any, value: Any) -> list[dict] | None:
        profiles = super().validate(obj, value)
        if profiles is None:  # only with allow_none, which this trait is not given
            return profiles
        options = set(KubeSpawner.class_trait_names(config=True))
        names = set()

        def listed(keys: set[str]) -> str:
            return ", ".join(sorted(keys))

        for profile in profiles:
            name = profile.get("name")
            if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name):
                raise TraitError(f"pod profile name {name!r}: letters, digits, '-_.' (at most 63)")
            if name in names:
                raise TraitError(f"two pod profiles are named {name!r}")
            names.add(name)
            if unknown := set(profile) - PROFILE_KEYS:
                raise TraitError(f"pod profile {name!r}: unknown key(s) {listed(unknown)}")
            if not isinstance(profile.get("groups", []), list):
                raise TraitError(f"pod profile {name!r}: groups must be a list of group names")
            override = profile.get("kubespawner_override", {})
            if unknown := set(override) - options:
                raise TraitError(
                    f"pod profile {name!r}: KubeSpawner has no option(s) {listed(unknown)}"
                )
        return profiles


def wants_pod(options: dict) -> bool:
    return POD_OPTION in options


def chosen_pod_profile(spawner: Any, options: dict) -> dict:
    """The pod profile that `options` name, or a 400 that says what is wrong."""
    try:
        if unknown := set(options) - {POD_OPTION}:
            raise InvalidOptions(
                f"a pod profile takes no other option, not {', '.join(sorted(unknown))}"
            )
        name = options[POD_OPTION]
        profile = next((p for p in spawner.pod_profiles if p["name"] == name), None)
        if profile is None:
            raise InvalidOptions(f"there is no pod profile named {name!r}")
        if not profile_allowed(profile, user_group_names(spawner)):
            raise InvalidOptions(
                f"pod profile {name!r} is only for members of the group(s) "
                f"{', '.join(profile['groups'])}"
            )
    except InvalidOptions as error:
        raise web.HTTPError(400, "Invalid server options: %s", error) from error
    return profile


class PodServer:
    """A server of a pod profile: the child KubeSpawner that runs it and the profile's name."""

    def __init__(self, parent: Any, profile: dict) -> None:
        self.profile_name = profile["name"]
        self.child = _child_spawner(parent, profile)

    @classmethod
    def resumed(cls, parent: Any, state: dict) -> PodServer:
        """The server that was running when the hub restarted, from its saved state."""
        profile = next(
            (p for p in parent.pod_profiles if p["name"] == state.get("profile")),
            {"name": state.get("profile", "")},  # a profile removed since: its pod still runs
        )
        server = cls(parent, profile)
        server.child.load_state(state)
        return server

    async def start(self, parent: Any) -> str:
        for attribute in SET_BEFORE_START:
            setattr(self.child, attribute, getattr(parent, attribute))
        return await self.child.start()

    async def poll(self, parent: Any) -> int | None:
        running = await self.child.poll()
        # KubeSpawner moves the server to the pod's new address (a pod restarted, e.g. with its
        # node) on its own Server object, which writes through to the database but is not the
        # parent's: the hub routes and checks by the parent's, which would keep the old address.
        if running is None and parent.server and self.child.server:
            parent.server.ip, parent.server.port = self.child.server.ip, self.child.server.port
        return running

    async def stop(self, now: bool) -> None:
        await self.child.stop(now=now)
        await TokenSecret.delete(self.child)

    def progress(self) -> AsyncIterator[dict]:
        return self.child.progress()

    def state(self) -> dict:
        return {**self.child.get_state(), "profile": self.profile_name}


def _child_spawner(parent: Any, profile: dict) -> KubeSpawner:
    """A KubeSpawner for `parent`'s server in `parent`'s namespace, configured by `profile`."""
    override = {"namespace": parent.namespace, **profile.get("kubespawner_override", {})}
    labels = {
        # The site's c.KubeSpawner labels, which the keyword below would otherwise replace: Zero to
        # JupyterHub's hub.jupyter.org/network-access-hub is what lets the pod reach the hub.
        **parent.config.get("KubeSpawner", {}).get("extra_labels", {}),
        f"{GROUP}/hub-user": safe_slug(parent.user.name, max_length=63),
        f"{GROUP}/server-name": safe_slug(parent.name or "default", max_length=63),
        f"{GROUP}/pod-profile": profile["name"],
        **parent.extra_labels,
        **override.pop("extra_labels", {}),
    }
    child = KubeSpawner(
        **{attribute: getattr(parent, attribute) for attribute in SPAWNER_WIRING},
        user_options={},  # the profile is the whole configuration; KubeSpawner has no profile_list
        extra_labels=labels,
        **override,
    )
    # The site's own hooks (configured or the profile's), if any, run first.
    token_secret = TokenSecret(labels, child.modify_pod_hook, child.after_pod_created_hook)
    child.modify_pod_hook = token_secret.modify_pod
    child.after_pod_created_hook = token_secret.own
    return child


class TokenSecret:
    """The Secret that carries the server's API token into the pod, instead of its spec."""

    def __init__(
        self, labels: dict[str, str], modify_pod_hook: Any, after_pod_created_hook: Any
    ) -> None:
        self.labels = labels
        self.site_modify_pod_hook = modify_pod_hook
        self.site_after_pod_created_hook = after_pod_created_hook

    @staticmethod
    def name(child: KubeSpawner) -> str:
        return f"{child.pod_name}-api-token"

    async def modify_pod(self, child: KubeSpawner, pod: V1Pod) -> V1Pod:
        if self.site_modify_pod_hook:
            pod = await maybe_future(self.site_modify_pod_hook(child, pod))
        container = next(c for c in pod.spec.containers if c.name == "notebook")
        carried = {e.name: e.value for e in container.env or [] if e.value == child.api_token}
        await self.delete(child)  # left from an earlier start of this server
        await child.api.create_namespaced_secret(
            child.namespace,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": self.name(child), "labels": self.labels},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in carried.items()},
            },
        )
        container.env = [
            V1EnvVar(
                name=e.name,
                value_from=V1EnvVarSource(
                    secret_key_ref=V1SecretKeySelector(name=self.name(child), key=e.name)
                ),
            )
            if e.name in carried
            else e
            for e in container.env or []
        ]
        return pod

    async def own(self, child: KubeSpawner, pod: V1Pod) -> None:
        """The Secret goes with its pod, wherever a garbage collector runs."""
        if self.site_after_pod_created_hook:
            await maybe_future(self.site_after_pod_created_hook(child, pod))
        created = await child.api.read_namespaced_pod(child.pod_name, child.namespace)
        owner = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": child.pod_name,
            "uid": created.metadata.uid,
        }
        await child.api.patch_namespaced_secret(
            self.name(child), child.namespace, {"metadata": {"ownerReferences": [owner]}}
        )

    @staticmethod
    async def delete(child: KubeSpawner) -> None:
        try:
            await child.api.delete_namespaced_secret(TokenSecret.name(child), child.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
