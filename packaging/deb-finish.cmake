# Run by CPack (CPACK_PRE_BUILD_SCRIPTS of packaging/deb.cmake) on the staging tree of each
# Debian package, before it is archived: compresses the manual pages (deploy-proxy's is a
# link to deploy-agent(8)) and adds /usr/share/doc/PACKAGE/copyright and changelog.Debian.gz,
# as Debian's policy asks.
set(version "${CPACK_PACKAGE_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")
# RFC 2822, as dpkg-parsechangelog wants; SOURCE_DATE_EPOCH makes it reproducible.
string(TIMESTAMP date "%a, %d %b %Y %H:%M:%S +0000" UTC)

find_program(gzip gzip REQUIRED)
foreach(component IN LISTS CPACK_COMPONENTS_ALL)
  set(root "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/${component}")
  if(NOT IS_DIRECTORY "${root}")
    continue()
  endif()
  string(TOUPPER "${component}" upper)
  set(package "${CPACK_DEBIAN_${upper}_PACKAGE_NAME}")
  file(GLOB_RECURSE pages "${root}/usr/share/man/*")
  foreach(page IN LISTS pages)
    if(NOT page MATCHES "\\.gz$")
      execute_process(COMMAND ${gzip} -9 -n -f "${page}" COMMAND_ERROR_IS_FATAL ANY)
    endif()
  endforeach()
  # deploy-proxy has no page of its own: deploy-agent(8) describes it.
  if(EXISTS "${root}/usr/share/man/man8/deploy-agent.8.gz")
    file(CREATE_LINK deploy-agent.8.gz "${root}/usr/share/man/man8/deploy-proxy.8.gz" SYMBOLIC)
  endif()
  set(doc "${root}/usr/share/doc/${package}")
  file(MAKE_DIRECTORY "${doc}")
  file(COPY_FILE "${CPACK_DEPLOYCTL_DEB_DIR}/copyright" "${doc}/copyright")
  file(WRITE "${doc}/changelog.Debian"
"deployctl (${version}) unstable; urgency=medium

  * Built from the deployctl sources by CPack (packaging/deb.cmake).

 -- ${CPACK_DEBIAN_PACKAGE_MAINTAINER}  ${date}
")
  execute_process(COMMAND ${gzip} -9 -n -f "${doc}/changelog.Debian" COMMAND_ERROR_IS_FATAL ANY)
  file(CHMOD "${doc}/copyright" "${doc}/changelog.Debian.gz"
    PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endforeach()
