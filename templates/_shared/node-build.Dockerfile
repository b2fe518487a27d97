WORKDIR /app
COPY {{package_files}} ./
RUN {{install_command}}
COPY . .
RUN {{build_step}}
