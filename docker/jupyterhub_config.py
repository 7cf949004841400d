"""JupyterHub for docker/compose.yaml (profile "hub"): the KCDC layout, hub + notebooks + arrowroot.

Environment (from compose.yaml):
  ARROWROOT_HUB_TOKEN   the arrowroot service's hub token (arrowroot reads the same variable)
  HUB_USERS             comma-separated user names allowed in; they form the group "analysis"
  HUB_PASSWORD          the shared password of the demo SharedPasswordAuthenticator (8+ characters) — replace the
                        authenticator with your site's (OAuthenticator for Keycloak/CILogon, LDAP)
  NOTEBOOK_IMAGE        the notebook image (arrowroot-jupyter:latest)
  DOCKER_NETWORK        the compose network the notebooks join (arrowroot_default)
  ARROWROOT_PUBLIC_URL  where browsers reach arrowroot's web view (its OAuth callback)
"""

import os

c = get_config()  # noqa: F821 (JupyterHub's config loader provides it)

users = {u.strip() for u in os.environ.get("HUB_USERS", "").split(",") if u.strip()}
password = os.environ.get("HUB_PASSWORD", "")
if not users or len(password) < 8:
    raise SystemExit("set HUB_USERS (comma-separated) and HUB_PASSWORD (8+ characters), "
                     "or configure your site's authenticator")

c.JupyterHub.bind_url = "http://0.0.0.0:8000"
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = "jupyterhub"
c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/state/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/state/cookie_secret"

c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = password
c.Authenticator.allowed_users = users
c.JupyterHub.load_groups = {"analysis": {"users": sorted(users)}}

# arrowroot: a hub service (no URL: it runs in its own container), its token shared through the
# environment; its role reads user names and groups; users' tokens may reach it.
public = os.environ.get("ARROWROOT_PUBLIC_URL", "http://127.0.0.1:8080").rstrip("/")
c.JupyterHub.services = [{
    "name": "arrowroot",
    "api_token": os.environ["ARROWROOT_HUB_TOKEN"],
    "oauth_redirect_uri": f"{public}/auth/callback",
    "oauth_no_confirm": True,
}]
c.JupyterHub.load_roles = [
    {"name": "arrowroot-service", "services": ["arrowroot"], "scopes": ["read:users:name", "read:users:groups"]},
    {"name": "user", "scopes": ["self", "access:services!service=arrowroot"]},
]

# Notebooks: one container per user from the arrowroot-jupyter image, on the compose network, with
# a notebook token that may call arrowroot (Client() finds it in $JUPYTERHUB_API_TOKEN).
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = os.environ.get("NOTEBOOK_IMAGE", "arrowroot-jupyter:latest")
c.DockerSpawner.network_name = os.environ.get("DOCKER_NETWORK", "arrowroot_default")
c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
c.DockerSpawner.notebook_dir = "/home/jovyan"
c.DockerSpawner.volumes = {"arrowroot-notebooks-{username}": "/home/jovyan/work"}
c.DockerSpawner.remove = True
c.Spawner.environment = {"ARROWROOT_URL": "grpc://arrowroot:8815"}
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server",
                                 "access:services!service=arrowroot", "read:users:groups!user"]
