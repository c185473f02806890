#pragma once
/// @file tandem.hpp
/// Umbrella header: everything a Tandem user includes.

#include <tandem/client.hpp>
#include <tandem/error.hpp>
#include <tandem/fwd.hpp>
#include <tandem/pilot.hpp>
#include <tandem/session.hpp>
#include <tandem/task.hpp>
#include <tandem/tensor.hpp>
#include <tandem/transport.hpp>
#include <tandem/version.hpp>
