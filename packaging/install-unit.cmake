# Run by `cmake --install`: writes deploy-agent.service to lib/systemd/system
# under the prefix, with ExecStart's /usr/local/bin replaced by the prefix's bin dir.
file(READ "${DEPLOYCTL_UNIT_SOURCE}" unit)
if(IS_ABSOLUTE "${DEPLOYCTL_BINDIR}")
  set(bindir "${DEPLOYCTL_BINDIR}")
else()
  set(bindir "${CMAKE_INSTALL_PREFIX}/${DEPLOYCTL_BINDIR}")
endif()
string(REPLACE "ExecStart=/usr/local/bin/" "ExecStart=${bindir}/" unit "${unit}")
set(destination "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
message(STATUS "Installing: ${destination}/deploy-agent.service")
file(MAKE_DIRECTORY "${destination}")
file(WRITE "${destination}/deploy-agent.service" "${unit}")
