# The Debian packages, built by CPack (`ninja package`, `cpack -G DEB`, or scripts/package):
#   deployctl     the CLI, deployctl(1), the bash, zsh and fish completions
#   deploy-agent  deploy-agent and deploy-proxy, deploy-agent(8), the systemd unit, the
#                 example /etc/deploy-agent/agent.toml (a conffile), the fail2ban filter,
#                 and the maintainer scripts of deb/ (docs/packaging.md)
# Each install() rule names its package as its COMPONENT: cli or agent.
# Included by the top CMakeLists.txt after every install() rule.

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME deployctl)
set(CPACK_PACKAGE_VENDOR "deployctl")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# The Debian revision: 0.1.0-1. A package rebuilt from the same sources raises it
# (cpack -D CPACK_DEBIAN_PACKAGE_RELEASE=2); the upgrade test does.
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(DEPLOYCTL_PACKAGE_MAINTAINER "deployctl maintainers <maintainers@deployctl.example>"
  CACHE STRING "The Maintainer field of the Debian packages (NAME <EMAIL>)")
set(CPACK_PACKAGE_CONTACT "${DEPLOYCTL_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${DEPLOYCTL_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SOURCE deployctl)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # NAME_VERSION-REVISION_ARCH.deb

# Installed under /usr, with DESTDIR: the rules that pick a path by the prefix (the unit in
# /lib/systemd/system, zsh's vendor-completions) see /usr, and /etc stays /etc.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
# Depends: from the shared libraries each binary links (dpkg-shlibdeps), plus the programs
# the maintainer scripts and the unit run.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL cli agent)
set(CPACK_COMPONENTS_GROUPING IGNORE)

set(CPACK_DEBIAN_CLI_PACKAGE_NAME deployctl)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_CLI_PACKAGE_SUGGESTS "git")
set(CPACK_COMPONENT_CLI_DESCRIPTION "deploy apps from their git tree to your own servers
deployctl packages an app's committed git tree, uploads what the server lacks
of it to deploy-agent over HTTP, HTTPS or SSH, and follows the build, the
health check and the switch of traffic. It also rolls back, scales, shows logs
and runs one-off commands next to the app.
.
This package holds the deployctl command, its manual page and its bash, zsh
and fish completions. The agent is in the deploy-agent package.")

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME deploy-agent)
# passwd: the postinst's useradd and groupadd; procps: /bin/kill, the unit's ExecReload.
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "passwd, procps")
set(CPACK_DEBIAN_AGENT_PACKAGE_SUGGESTS "deployctl, git, docker.io | podman")
set(CPACK_COMPONENT_AGENT_DESCRIPTION "build, run and route the releases deployctl sends
deploy-agent runs on every server deployctl deploys to: it stores the uploaded
trees, builds and starts each release as processes or containers (Docker,
Podman), checks its health and switches traffic to it through deploy-proxy, a
reverse proxy that outlives agent restarts and upgrades.
.
This package installs it as a systemd service (enabled, not started), with an
example /etc/deploy-agent/agent.toml, the deploy-agent system user and the
deploy group.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
  ${CMAKE_CURRENT_LIST_DIR}/deb/postinst
  ${CMAKE_CURRENT_LIST_DIR}/deb/prerm
  ${CMAKE_CURRENT_LIST_DIR}/deb/postrm
  ${CMAKE_CURRENT_LIST_DIR}/deb/conffiles)

# After the staging install, before the archives: what Debian's policy asks of every
# package (compressed manual pages, the copyright file, changelog.Debian.gz).
set(CPACK_PRE_BUILD_SCRIPTS ${CMAKE_CURRENT_LIST_DIR}/deb-finish.cmake)
set(CPACK_DEPLOYCTL_DEB_DIR ${CMAKE_CURRENT_LIST_DIR}/deb)

include(CPack)
