# tandem_option(NAME DOC DEFAULT): a three-way switch for an optional
# dependency. AUTO uses the dependency when it is found, ON requires it, OFF
# ignores it. After tandem_resolve_option(NAME FOUND), TANDEM_HAVE_<X> is set.
function(tandem_option name doc default)
  set(${name} ${default} CACHE STRING "${doc} (AUTO|ON|OFF)")
  set_property(CACHE ${name} PROPERTY STRINGS AUTO ON OFF)
endfunction()

function(tandem_resolve_option name found have_var)
  if(${name} STREQUAL "OFF")
    set(${have_var} OFF PARENT_SCOPE)
  elseif(found)
    set(${have_var} ON PARENT_SCOPE)
  elseif(${name} STREQUAL "ON")
    message(FATAL_ERROR "${name}=ON but the dependency was not found")
  else()
    set(${have_var} OFF PARENT_SCOPE)
  endif()
endfunction()
