# Run by `cmake --install` (and CPack): writes deploy-agent.service to lib/systemd/system
# under the prefix, with ExecStart's /usr/local/bin replaced by the prefix's bin dir.
file(READ "${DEPLOYCTL_UNIT_SOURCE}" unit)
if(IS_ABSOLUTE "${DEPLOYCTL_BINDIR}")
  set(bindir "${DEPLOYCTL_BINDIR}")
else()
  set(bindir "${CMAKE_INSTALL_PREFIX}/${DEPLOYCTL_BINDIR}")
endif()
string(REPLACE "ExecStart=/usr/local/bin/" "ExecStart=${bindir}/" unit "${unit}")
# Under /usr (the Debian package) it goes where Debian 12's systemd packages put their units,
# /lib/systemd/system (the same folder on a merged-/usr system); elsewhere under the prefix.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(destination "$ENV{DESTDIR}/lib/systemd/system")
else()
  set(destination "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()
message(STATUS "Installing: ${destination}/deploy-agent.service")
file(MAKE_DIRECTORY "${destination}")
file(WRITE "${destination}/deploy-agent.service" "${unit}")
