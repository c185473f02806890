// A C++ block that uses a client, inside a function that has one.
#include <string>

#include <tandem/tandem.hpp>

void docs_example(tandem::Client& client, const std::string& body) {
  // @DOC@
}
